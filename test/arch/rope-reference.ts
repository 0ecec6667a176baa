/**
 * HF's RoPE inverse frequencies and attention factors in float64, written from transformers'
 * modeling_rope_utils.py (_compute_*_parameters), for the reference forwards of the RoPE tests.
 */

/** _compute_default_rope_parameters: 1 / base^(2i/dim). */
export function defaultInv(base: number, dim: number): number[] {
  return Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(base, (2 * i) / dim));
}

/** _compute_dynamic_ntk_parameters for a forward over seq positions (seq_len = max(seq, max_position_embeddings)). */
export function dynamicInv(base: number, dim: number, factor: number, seq: number, maxPos: number): number[] {
  const len = Math.max(seq, maxPos);
  return defaultInv(base * ((factor * len) / maxPos - (factor - 1)) ** (dim / (dim - 2)), dim);
}

/** _compute_llama3_parameters. */
export function llama3Inv(base: number, dim: number, factor: number, low: number, high: number, old: number): number[] {
  return defaultInv(base, dim).map((inv) => {
    const wavelen = (2 * Math.PI) / inv;
    if (wavelen < old / high) return inv;
    if (wavelen > old / low) return inv / factor;
    const smooth = (old / wavelen - low) / (high - low);
    return ((1 - smooth) * inv) / factor + smooth * inv;
  });
}

/** _compute_yarn_parameters: the ramp-blended frequencies and the attention factor. */
export function yarn(base: number, dim: number, factor: number, original: number, o: { betaFast?: number; betaSlow?: number; truncate?: boolean; mscale?: number; mscaleAll?: number; attention?: number } = {}) {
  const corr = (rot: number) => (dim * Math.log(original / (rot * 2 * Math.PI))) / (2 * Math.log(base));
  let low = corr(o.betaFast ?? 32);
  let high = corr(o.betaSlow ?? 1);
  if (o.truncate ?? true) [low, high] = [Math.floor(low), Math.ceil(high)];
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const inv = defaultInv(base, dim).map((e, i) => {
    const extrapolation = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
    return (e / factor) * (1 - extrapolation) + e * extrapolation;
  });
  const m = (s: number, k = 1) => (s <= 1 ? 1 : 0.1 * k * Math.log(s) + 1);
  const attention = o.attention ?? (o.mscale && o.mscaleAll ? m(factor, o.mscale) / m(factor, o.mscaleAll) : m(factor));
  return { inv, attention };
}

/** _compute_longrope_parameters: 1 / (ext_i · base^(2i/dim)). */
export function longropeInv(base: number, dim: number, ext: number[]): number[] {
  return defaultInv(base, dim).map((v, i) => v / ext[i]);
}
