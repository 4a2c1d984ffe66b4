import { problemOf } from './http.ts'
import type { Rights, SessionInfo } from './protocol.ts'

const ALL: Rights = { read: true, send: true, manage: true }

/** Who this browser is, from `GET /api/session`; without users on the server, everyone may do everything. */
export const session = $state<SessionInfo & { checked: boolean }>({ checked: false, required: false, user: null, role: null, rights: ALL })

/** Whether the dashboard can show data, or must show the login page first. */
export const loggedIn = () => !session.required || session.rights.read

export async function checkSession(): Promise<void> {
  try {
    const res = await fetch('/api/session', { headers: { accept: 'application/json' } })
    if (res.ok) Object.assign(session, (await res.json()) as SessionInfo)
  } catch {
    // the server is not reachable: the connection banner says so; show the app as if open
  }
  session.checked = true
}

/** Logs in; resolves with the server's words when it refuses. */
export async function login(user: string, password: string): Promise<string | null> {
  const res = await fetch('/api/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ user, password }),
  })
  if (!res.ok) return (await problemOf(res)).replace(/^E_[A-Z_]+: /, '')
  await checkSession()
  return null
}

/** Ends the session and starts the page again, at the login form. */
export async function logout(): Promise<void> {
  await fetch('/api/logout', { method: 'POST' }).catch(() => undefined)
  location.reload()
}
