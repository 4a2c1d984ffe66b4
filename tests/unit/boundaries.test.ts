import { fileURLToPath } from 'node:url'
import { ESLint } from 'eslint'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))
const eslint = new ESLint({ cwd: root })

/** The import rules eslint reports for `code` as if it were the file at `path`. */
async function restricted(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${root}${path}` })
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message.split("'")[1]!)
}

describe('import boundaries (eslint, in npm run lint)', () => {
  it.each([
    ['protocol/x.ts', "import fs from 'node:fs'\nimport { createBroker } from '../broker/broker.ts'\nexport { fs, createBroker }\n", ['node:fs', '../broker/broker.ts']],
    ['formats/x.ts', "import { Registry } from '../devices/registry.ts'\nimport { topicError } from '../protocol/topics.ts'\nexport { Registry, topicError }\n", ['../devices/registry.ts']],
    ['auth/x.ts', "import { Registry } from '../devices/registry.ts'\nimport { topicMatches } from '../protocol/topics.ts'\nexport { Registry, topicMatches }\n", ['../devices/registry.ts']],
    ['broker/x.ts', "import { Server } from 'socket.io'\nimport { createBridge } from '../bridge/bridge.ts'\nexport { Server, createBridge }\n", ['socket.io', '../bridge/bridge.ts']],
    ['bridge/x.ts', "import { createPulseboard } from '../server/pulseboard.ts'\nexport { createPulseboard }\n", ['../server/pulseboard.ts']],
    ['store/x.ts', "import { start } from '../cli/start.ts'\nexport { start }\n", ['../cli/start.ts']],
    ['dashboard/src/lib/x.ts', "import { Registry } from '../../../devices/registry.ts'\nimport { LIVE_NAMESPACE } from '../../../protocol/events.ts'\nexport { Registry, LIVE_NAMESPACE }\n", ['../../../devices/registry.ts']],
    ['simulators/x.ts', "import { io } from 'socket.io-client'\nimport { createBroker } from '../broker/broker.ts'\nexport { io, createBroker }\n", ['socket.io-client', '../broker/broker.ts']],
  ])('%s may not import what crosses its boundary', async (path, code, expected) => {
    expect(await restricted(path, code)).toEqual(expected)
  })
})
