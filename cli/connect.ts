import { io, type Socket } from 'socket.io-client'
import {
  LIVE_NAMESPACE,
  type LiveAuth,
  type LiveClientToServerEvents,
  type LiveServerToClientEvents,
} from '../protocol/index.ts'
import { CliError } from './args.ts'

export type LiveClient = Socket<LiveServerToClientEvents, LiveClientToServerEvents>

/** Connects to `/live`, or fails with one line that says what to do. */
export function connectLive(url: string, auth: LiveAuth = {}, timeoutMs = 5000): Promise<LiveClient> {
  const socket: LiveClient = io(url + LIVE_NAMESPACE, { transports: ['websocket'], reconnectionDelayMax: 2000, auth: { ...auth } })
  return new Promise((resolve, reject) => {
    let lastError = `no answer in ${timeoutMs / 1000} s`
    const timer = setTimeout(() => fail(lastError), timeoutMs)
    const fail = (why: string) => {
      clearTimeout(timer)
      socket.disconnect()
      reject(new CliError(`cannot reach ${url} (${why}); is "pulseboard start" running there? Use --url to point elsewhere`))
    }
    const refuse = (why: string) => {
      clearTimeout(timer)
      socket.disconnect()
      reject(new CliError(`${url} refused the connection: ${why}`))
    }
    socket.on('connect_error', (err) => {
      // the server refused us (a catalogue code in `data`): retrying will not change that
      const code = (err as { data?: { code?: unknown } }).data?.code
      if (typeof code === 'string') return refuse(`${code}: ${err.message}`)
      // a refused or unknown host will not change in 5 s; say so now
      const cause = (err as { description?: { message?: unknown } }).description?.message
      if (typeof cause === 'string' && /ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(cause)) fail(cause)
      else lastError = err.message
    })
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('connect_error')
      resolve(socket)
    })
  })
}
