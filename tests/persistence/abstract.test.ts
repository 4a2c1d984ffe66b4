import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

/** Runs one of this folder's node:test files, which call aedes-persistence's abstract suite. */
function runSuite(file: string): Promise<{ code: number; output: string }> {
  const path = fileURLToPath(new URL(file, import.meta.url))
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', '--test', '--test-reporter', 'tap', path], { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: stdout + stderr })
    })
  })
}

describe("aedes-persistence's abstract suite", () => {
  it('passes against the bounded in-memory persistence', async () => {
    const { code, output } = await runSuite('./bounded-memory.ts')
    const pass = Number(/^# pass (\d+)/m.exec(output)?.[1] ?? 0)
    const fail = Number(/^# fail (\d+)/m.exec(output)?.[1] ?? -1)
    expect({ code, fail }, output.slice(-4000)).toEqual({ code: 0, fail: 0 })
    expect(pass).toBeGreaterThanOrEqual(50)
  }, 60_000)

  it('passes against the SQLite persistence, alone and inside the bounds', async () => {
    const { code, output } = await runSuite('./sqlite.ts')
    const pass = Number(/^# pass (\d+)/m.exec(output)?.[1] ?? 0)
    const fail = Number(/^# fail (\d+)/m.exec(output)?.[1] ?? -1)
    expect({ code, fail }, output.slice(-4000)).toEqual({ code: 0, fail: 0 })
    expect(pass).toBeGreaterThanOrEqual(100)
  }, 120_000)
})
