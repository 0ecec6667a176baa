/** Shell-style globs for --skip: `*` matches any run of characters (dots included), `?` one character. */
export function globMatcher(patterns: string[]): (name: string) => boolean {
  const res = patterns.map(
    (p) => new RegExp('^' + p.split('').map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('') + '$'),
  );
  return (name) => res.some((re) => re.test(name));
}
