import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // real servers, browsers and brokers: on a busy 2-core machine a screenshot or bench test can take 45 s
    testTimeout: 90_000,
    hookTimeout: 60_000,
    // Integration tests start real servers; two cores make more workers slower, not faster.
    maxWorkers: 2,
  },
})
