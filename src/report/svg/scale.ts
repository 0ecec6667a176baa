/**
 * Scales (data value → pixel) and their ticks. Linear ticks step by 1, 2 or 5 × 10^k; log ticks sit on
 * powers of ten and, when the domain spans few decades, on 2× and 5× (or every integer multiple) of them,
 * so a reader can always find two labelled values to read a point against.
 */

export interface Tick {
  value: number;
  label: string;
  /** Minor ticks get a short mark and no label (log scales over many decades). */
  minor: boolean;
}

export interface Scale {
  kind: 'linear' | 'log';
  domain: readonly [number, number];
  range: readonly [number, number];
  map(v: number): number;
  ticks(): Tick[];
}

const MANTISSAS = [1, 2, 5] as const;

/** Drop binary noise (0.30000000000000004 → 0.3) from values built as k · step or m · 10^k. */
function clean(v: number): number {
  return v === 0 ? 0 : parseFloat(v.toPrecision(12));
}

/** The smallest of 1, 2, 5 × 10^k that is ≥ span / count: at most `count` intervals cover the span. */
export function niceStep(span: number, count: number): number {
  if (!(span > 0) || !Number.isFinite(span)) throw new Error(`niceStep: span must be positive and finite, got ${span}`);
  if (!(count >= 1)) throw new Error(`niceStep: count must be >= 1, got ${count}`);
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const r = raw / mag;
  // A relative tolerance keeps 0.2 / 1 from becoming 0.5 because 0.2 / 0.1 = 2.0000000000000004.
  const m = r <= 1 + 1e-9 ? 1 : r <= 2 + 1e-9 ? 2 : r <= 5 + 1e-9 ? 5 : 10;
  return clean(m * mag);
}

/** A domain widened to whole steps (and away from a single point), for an axis that starts and ends on a tick. */
export function niceLinearDomain(min: number, max: number, count = 5): [number, number] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || min > max) throw new Error(`niceLinearDomain: bad range [${min}, ${max}]`);
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) / 10;
    return niceLinearDomain(min - pad, max + pad, count);
  }
  const step = niceStep(max - min, count);
  return [clean(Math.floor(min / step + 1e-9) * step), clean(Math.ceil(max / step - 1e-9) * step)];
}

/** Decimals needed to print multiples of `step` exactly (step is 1, 2 or 5 × 10^k). */
function decimalsFor(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

/** Ticks at the multiples of a nice step inside [min, max]. */
export function linearTicks(min: number, max: number, count = 5): Tick[] {
  if (min === max) return [{ value: min, label: formatNumber(min), minor: false }];
  const step = niceStep(max - min, count);
  const d = decimalsFor(step);
  const out: Tick[] = [];
  for (let k = Math.ceil(min / step - 1e-9); k * step <= max + step * 1e-9; k++) {
    const v = clean(k * step);
    out.push({ value: v, label: (Object.is(v, -0) ? 0 : v).toFixed(d), minor: false });
  }
  return out;
}

/** The largest 1, 2, 5 × 10^k ≤ v. */
function niceBelow(v: number): number {
  const e = Math.floor(Math.log10(v));
  for (let k = e + 1; k >= e - 1; k--) {
    for (let i = MANTISSAS.length - 1; i >= 0; i--) {
      const c = clean(MANTISSAS[i] * 10 ** k);
      if (c <= v * (1 + 1e-12)) return c;
    }
  }
  return clean(10 ** (e - 1));
}

/** The smallest 1, 2, 5 × 10^k ≥ v. */
function niceAbove(v: number): number {
  const e = Math.floor(Math.log10(v));
  for (let k = e - 1; k <= e + 1; k++) {
    for (const m of MANTISSAS) {
      const c = clean(m * 10 ** k);
      if (c >= v * (1 - 1e-12)) return c;
    }
  }
  return clean(10 ** (e + 2));
}

/** A positive domain widened to 1, 2, 5 × 10^k at both ends (never a single point). */
export function niceLogDomain(min: number, max: number): [number, number] {
  if (!(min > 0) || !(max >= min) || !Number.isFinite(max)) throw new Error(`niceLogDomain: need 0 < min <= max, got [${min}, ${max}]`);
  let lo = niceBelow(min);
  let hi = niceAbove(max);
  if (lo === hi) {
    lo = niceBelow(lo * 0.99);
    hi = niceAbove(hi * 1.01);
  }
  return [lo, hi];
}

/** A tick value printed briefly: "0.5", "20", "10000", "1e5". */
export function formatNumber(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    const [m, e] = v.toExponential().split('e');
    return `${clean(Number(m))}e${Number(e)}`;
  }
  return String(clean(v));
}

/**
 * Ticks of a log axis over [min, max] (min > 0). Over more than 3 decades: powers of ten labelled, 2–9 ×
 * as minor marks. Over 1–3 decades: 1, 2, 5 × 10^k labelled, the other integers minor. Within one decade:
 * every integer multiple of the decade labelled. Fewer than two labelled ticks: linear ticks instead.
 */
export function logTicks(min: number, max: number): Tick[] {
  if (!(min > 0) || !(max > min)) throw new Error(`logTicks: need 0 < min < max, got [${min}, ${max}]`);
  const decades = Math.log10(max / min);
  const labelled: readonly number[] = decades > 3 ? [1] : decades > 1 + 1e-9 ? MANTISSAS : [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const out: Tick[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (let m = 1; m <= 9; m++) {
      const v = clean(m * 10 ** e);
      if (v < min * (1 - 1e-12) || v > max * (1 + 1e-12)) continue;
      const major = labelled.includes(m);
      out.push({ value: v, label: major ? formatNumber(v) : '', minor: !major });
    }
  }
  if (out.filter((t) => !t.minor).length < 2) return linearTicks(min, max);
  return out;
}

export function linearScale(domain: readonly [number, number], range: readonly [number, number], tickCount = 5): Scale {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0;
  return {
    kind: 'linear',
    domain,
    range,
    map: (v) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0)),
    ticks: () => linearTicks(d0, d1, tickCount),
  };
}

export function logScale(domain: readonly [number, number], range: readonly [number, number]): Scale {
  const [d0, d1] = domain;
  if (!(d0 > 0) || !(d1 > d0)) throw new Error(`logScale: need 0 < min < max, got [${d0}, ${d1}]`);
  const [r0, r1] = range;
  const l0 = Math.log(d0);
  const span = Math.log(d1) - l0;
  return {
    kind: 'log',
    domain,
    range,
    map: (v) => {
      if (!(v > 0)) throw new Error(`log scale: value must be positive, got ${v}`);
      return r0 + ((Math.log(v) - l0) / span) * (r1 - r0);
    },
    ticks: () => logTicks(d0, d1),
  };
}

/** A scale over data values: the nice domain of their extent, a log one with a little room (log needs positive values). */
export function scaleFor(kind: 'linear' | 'log', values: readonly number[], range: readonly [number, number], opts: { includeZero?: boolean } = {}): Scale {
  const finite = values.filter((v) => Number.isFinite(v) && (kind === 'linear' || v > 0));
  if (finite.length === 0) return kind === 'log' ? logScale([1, 10], range) : linearScale([0, 1], range);
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  // 5% of room on a log axis, so that no point (or reference line) sits on the frame.
  if (kind === 'log') return logScale(niceLogDomain(lo / 1.05, hi * 1.05), range);
  if (opts.includeZero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  return linearScale(niceLinearDomain(lo, hi), range);
}
