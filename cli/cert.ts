import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { CliError, UsageError, integer, parse, type Command } from './args.ts'

const usage = `Usage: pulseboard cert [--out <dir>] [--name <host>]... [--days <n>]

Writes a self-signed certificate and its key, for trying TLS out:
<dir>/cert.pem and <dir>/key.pem (readable by you only). Browsers and devices
warn about it until you trust it; on the internet use a real one (Let's Encrypt).

Then: pulseboard start --tls-cert <dir>/cert.pem --tls-key <dir>/key.pem
and mosquitto_pub --cafile <dir>/cert.pem -p 8883 ...

Options:
      --out <dir>    where to write them (default tls)
      --name <host>  a name or address the certificate is for; repeat for more
                     (default localhost, 127.0.0.1, ::1 and this machine's name)
      --days <n>     how long it is valid (default 365)
      --force        replace files that are there
  -h, --help         show this help`

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parse(argv, { out: { type: 'string' }, name: { type: 'string', multiple: true }, days: { type: 'string' }, force: { type: 'boolean' } }, true)
    if (positionals.length > 0) throw new UsageError(`unexpected ${JSON.stringify(positionals[0])}`)
    const dir = path.resolve(values.out ?? 'tls')
    const days = integer(values.days ?? '365', '--days', 1, 3650)
    const names = values.name ?? ['localhost', '127.0.0.1', '::1', os.hostname()]
    const certFile = path.join(dir, 'cert.pem')
    const keyFile = path.join(dir, 'key.pem')
    if (!values.force && (existsSync(certFile) || existsSync(keyFile))) throw new CliError(`${dir} already has cert.pem or key.pem; pass --force to replace them`)
    // loaded here only: nothing else needs it
    const { generate } = await import('selfsigned')
    const now = new Date()
    const pems = await generate([{ name: 'commonName', value: names[0]! }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: now,
      notAfterDate: new Date(now.getTime() + days * 86_400_000),
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: names.map((n) => (net.isIP(n) ? { type: 7 as const, ip: n } : { type: 2 as const, value: n })) },
      ],
    })
    mkdirSync(dir, { recursive: true })
    // a mode applies only to a new file: with --force, one that was readable by all must not keep that mode for the new key
    rmSync(keyFile, { force: true })
    writeFileSync(certFile, pems.cert, { mode: 0o644 })
    writeFileSync(keyFile, pems.private, { mode: 0o600, flag: 'wx' })
    console.log(`wrote ${certFile} and ${keyFile}, valid ${days} days for ${names.join(', ')}
Start with: pulseboard start --tls-cert ${certFile} --tls-key ${keyFile}`)
    return 0
  },
}
