/** Solves A·X = B (A k×k SPD, B k×m) in float64 by Gaussian elimination with partial pivoting. */
export function solve64(a: number[][], b: number[][]): number[][] {
  const k = a.length;
  const m = b[0].length;
  const A = a.map((r) => [...r]);
  const B = b.map((r) => [...r]);
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]];
    [B[c], B[p]] = [B[p], B[c]];
    for (let r = c + 1; r < k; r++) {
      const f = A[r][c] / A[c][c];
      for (let j = c; j < k; j++) A[r][j] -= f * A[c][j];
      for (let j = 0; j < m; j++) B[r][j] -= f * B[c][j];
    }
  }
  const X = Array.from({ length: k }, () => new Array<number>(m).fill(0));
  for (let r = k - 1; r >= 0; r--) {
    for (let j = 0; j < m; j++) {
      let s = B[r][j];
      for (let q = r + 1; q < k; q++) s -= A[r][q] * X[q][j];
      X[r][j] = s / A[r][r];
    }
  }
  return X;
}
