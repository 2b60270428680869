/**
 * Vertical sizing, pure: recommend CPU and memory limits from observed usage (peak + headroom,
 * clamped to bounds), reservations as a fraction of the limits, and the usage floor no limit may
 * go below. Used by resizeService; unit-tested on its own.
 */
import type { ResourceLimits } from '../../activities/resources';

export interface SizingUsage {
  /** Busiest replica's CPU in cores: peak and p95 over the window. */
  cpuCoresPeak: number;
  cpuCoresP95: number;
  /** Busiest replica's memory in MiB: peak over the window. */
  memoryMbPeak: number;
}

export interface SizingInput {
  bounds: { cpu: { min: number; max: number }; memoryMb: { min: number; max: number } };
  headroomPercent: number;
  reservationFraction: number;
  limits?: { cpu?: number; memoryMb?: number };
}

export interface SizingPlan {
  limits: ResourceLimits;
  source: { cpu: 'recommended' | 'explicit'; memoryMb: 'recommended' | 'explicit' };
  /** The observed usage no limit may go below: CPU p95 (cores), memory peak (MiB). */
  floor: { cpu: number; memoryMb: number };
  /** Field -> problem, when a limit is below the floor (bad input: nothing may be touched). */
  problems: string[];
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const ceilTo = (v: number, step: number) => Math.ceil(v / step - 1e-9) * step;
const round2 = (v: number) => Math.round(v * 100) / 100;

export function planSizing(usage: SizingUsage, input: SizingInput): SizingPlan {
  const h = 1 + input.headroomPercent / 100;
  const floor = { cpu: round2(ceilTo(usage.cpuCoresP95, 0.01)), memoryMb: Math.ceil(usage.memoryMbPeak) };
  const recCpu = round2(clamp(ceilTo(usage.cpuCoresPeak * h, 0.01), input.bounds.cpu.min, input.bounds.cpu.max));
  const recMem = Math.round(clamp(Math.ceil(usage.memoryMbPeak * h), input.bounds.memoryMb.min, input.bounds.memoryMb.max));
  const cpu = input.limits?.cpu ?? recCpu;
  const memoryMb = input.limits?.memoryMb ?? recMem;
  const source = { cpu: input.limits?.cpu !== undefined ? 'explicit' : 'recommended', memoryMb: input.limits?.memoryMb !== undefined ? 'explicit' : 'recommended' } as const;
  const problems: string[] = [];
  if (cpu < floor.cpu) {
    problems.push(`${source.cpu === 'explicit' ? 'limits.cpu' : 'bounds.cpu.max'}: ${cpu} CPU is below the observed usage floor (p95 ${floor.cpu} CPU)`);
  }
  if (memoryMb < floor.memoryMb) {
    problems.push(`${source.memoryMb === 'explicit' ? 'limits.memoryMb' : 'bounds.memoryMb.max'}: ${memoryMb} MiB is below the observed usage floor (peak ${floor.memoryMb} MiB)`);
  }
  const f = input.reservationFraction;
  return {
    limits: {
      cpus: round2(cpu),
      memoryMb,
      cpuReservation: f > 0 ? Math.max(0.01, round2(cpu * f)) : 0,
      memoryReservationMb: f > 0 ? Math.max(6, Math.floor(memoryMb * f)) : 0,
    },
    source,
    floor,
    problems,
  };
}
