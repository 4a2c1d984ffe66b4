import os from 'node:os'

/** This machine's IPv4 addresses on its networks, for the addresses a device on the LAN can use. */
export function lanAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
    .map((i) => i!.address)
}
