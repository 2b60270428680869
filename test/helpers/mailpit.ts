/** Read delivered mail through Mailpit's HTTP API. */
import { config } from './temporal';
import { waitUntil } from './wait';

export interface MailSummary {
  ID: string;
  Subject: string;
  Created: string;
  To: Array<{ Address: string }>;
}

export async function searchMail(query: string): Promise<MailSummary[]> {
  const res = await fetch(`${config.DURABLE_OPS_MAILPIT_API}/api/v1/search?query=${encodeURIComponent(query)}&limit=200`);
  if (!res.ok) throw new Error(`mailpit search: HTTP ${res.status}`);
  const body = (await res.json()) as { messages: MailSummary[] };
  return body.messages;
}

export async function mailText(id: string): Promise<string> {
  const res = await fetch(`${config.DURABLE_OPS_MAILPIT_API}/api/v1/message/${id}`);
  if (!res.ok) throw new Error(`mailpit message: HTTP ${res.status}`);
  const body = (await res.json()) as { Text: string };
  return body.Text;
}

/** Wait until at least `count` messages match the query (subject words, e.g. the service name). */
export async function waitForMail(query: string, count = 1, timeoutMs = 30_000): Promise<MailSummary[]> {
  return waitUntil(`${count} mail(s) matching ${query}`, async () => {
    const found = await searchMail(query);
    return found.length >= count ? found : undefined;
  }, timeoutMs, 250);
}
