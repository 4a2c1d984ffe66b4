import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { repoRoot, run, killAll } from '../helpers/process.ts'
import { within } from '../helpers/stack.ts'

/**
 * The package as a user gets it: `npm pack`, then `npm install <tarball>` into an
 * empty folder, then `npx pulseboard`. `npm test` builds just before the tests
 * run, so this packs that build.
 */
let dir: string
let tarball: string

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pulseboard-install-'))
  const packed = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repoRoot, encoding: 'utf8' })
  tarball = path.join(dir, (JSON.parse(packed) as { filename: string }[])[0]!.filename)
  const app = path.join(dir, 'app')
  fs.mkdirSync(app)
  // the one native dependency builds from source here (no prebuilt binary can be downloaded); npm 11 runs
  // a dependency's install script only where the project allows it, as docs/deploy.md tells users to
  fs.writeFileSync(path.join(app, '.npmrc'), 'allow-scripts=better-sqlite3\n')
  execFileSync('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, stdio: 'ignore' })
}, 300_000)

afterAll(async () => {
  await killAll()
  fs.rmSync(dir, { recursive: true, force: true })
})

const app = () => path.join(dir, 'app')
/** `npx pulseboard ...` in the folder it was installed into. */
const npx = (args: string[]) => run('npx', ['--no-install', 'pulseboard', ...args], {}, app())
/** The executable npx finds, run directly: npm exec does not pass SIGTERM on to it. */
const bin = (args: string[]) => run(path.join(app(), 'node_modules', '.bin', 'pulseboard'), args, {}, app())

describe('the package installed from its tarball', () => {
  it('ships compiled JavaScript and the built dashboard, and no TypeScript runner', () => {
    const pkg = path.join(app(), 'node_modules', 'pulseboard')
    expect(fs.existsSync(path.join(pkg, 'dist', 'app', 'pulseboard.js'))).toBe(true)
    expect(fs.existsSync(path.join(pkg, 'dist', 'dashboard', 'index.html'))).toBe(true)
    expect(fs.readdirSync(path.join(pkg, 'dist', 'app')).some((f) => f.endsWith('.ts'))).toBe(false)
    expect(fs.existsSync(path.join(app(), 'node_modules', 'tsx'))).toBe(false)
    expect(fs.existsSync(path.join(app(), 'node_modules', 'typescript'))).toBe(false)
    expect(fs.existsSync(path.join(app(), 'node_modules', 'playwright-core'))).toBe(false)
  })

  it('prints its version', async () => {
    const child = npx(['--version'])
    expect(await within(30_000, 'pulseboard --version to exit', child.exited)).toBe(0)
    const { version } = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }
    expect(child.stdout.values).toEqual([version])
  }, 40_000)

  it('names the package a missing optional dependency would need', async () => {
    const child = npx(['bench', '--scenario', 'dashboard', '--duration', '1s'])
    expect(await within(60_000, 'the dashboard bench to give up', child.exited)).toBe(1)
    expect(child.stderr.values.join('\n')).toContain('npm install playwright-core')
  }, 70_000)

  it('starts, serves the dashboard and its assets, and takes a reading from mosquitto_pub', async () => {
    const child = bin(['start', '--port', '0', '--mqtt-port', '0', '--host', '127.0.0.1'])
    const banner = await child.stdout.until('the banner', (l) => l.some((x) => x.includes('mqtt://')), 30_000)
    const httpUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(banner.join('\n'))![0]
    const mqttPort = /mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(banner.join('\n'))![1]!

    expect((await fetch(`${httpUrl}/api/health`)).status).toBe(200)
    const html = await (await fetch(`${httpUrl}/`)).text()
    expect(html).toContain('<div id="app">')
    const assets = [...html.matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((m) => m[1]!)
    expect(assets.length).toBeGreaterThanOrEqual(2)
    for (const asset of assets) {
      const res = await fetch(httpUrl + asset)
      expect(res.status, asset).toBe(200)
      expect(res.headers.get('content-type'), asset).toMatch(/javascript|css/)
    }

    const pub = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', mqttPort, '-t', 'devices/packaged/telemetry', '-m', '{"temperature":21.5}'])
    expect(await pub.exited).toBe(0)
    await within(10_000, 'the device to be listed', (async () => {
      for (;;) {
        const list = (await (await fetch(`${httpUrl}/api/devices`)).json()) as { id: string; metrics: Record<string, { value: number }> }[]
        if (list.some((d) => d.id === 'packaged' && d.metrics.temperature?.value === 21.5)) return
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })())
    // prom-client, loaded lazily, and the compiled SQLite module both work from the bundle
    const metrics = await fetch(`${httpUrl}/metrics`)
    expect(metrics.status).toBe(200)
    expect(await metrics.text()).toMatch(/^pulseboard_store_db_bytes \d+/m)
    expect(await child.kill()).toBe(0)
    expect(fs.existsSync(path.join(app(), 'data', 'pulseboard.db'))).toBe(true)
  }, 60_000)
})
