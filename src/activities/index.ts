/**
 * The activity factory: every activity the worker registers, built from injected clients.
 * Workflows import this module as a type only.
 */
import type Docker from 'dockerode';
import type { Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import { createAlertActivities } from './alerts';
import { createDockerActivities } from './docker';
import { createHealthActivities } from './health';

export interface ActivityDeps {
  docker: Docker;
  mailer: Transporter;
  alertFrom: string;
  alertTo: string[];
  log: Logger;
  fetch?: typeof fetch;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createDockerActivities({ docker: deps.docker, log: deps.log }),
    ...createHealthActivities({ docker: deps.docker, fetch: deps.fetch }),
    ...createAlertActivities({ mailer: deps.mailer, from: deps.alertFrom, to: deps.alertTo, log: deps.log }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
