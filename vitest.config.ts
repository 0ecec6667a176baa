import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // onnxruntime sessions use every core; running test files in parallel only oversubscribes 2 cores.
    fileParallelism: false,
  },
});
