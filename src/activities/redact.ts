/** Masks things that look like secrets before text leaves the engine (log tails, alert details). */
const RULES: Array<[RegExp, string]> = [
  [/((?:password|passwd|pwd|secret|token|api[_-]?key|authorization)\s*[=:]\s*)("[^"]*"|'[^']*'|\S+)/gi, '$1[REDACTED]'],
  [/(bearer\s+)[A-Za-z0-9._~+/-]+=*/gi, '$1[REDACTED]'],
  [/(\w+:\/\/[^:/\s@]+:)[^@\s]+@/gi, '$1[REDACTED]@'],
];

export function redact(text: string): string {
  return RULES.reduce((acc, [re, replacement]) => acc.replace(re, replacement), text);
}
