import type { ErrorReply } from './protocol.ts'

/** What a failed request said, for people: the catalogue's code and message when the body has them. */
export async function problemOf(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as Partial<ErrorReply>
    if (body.error) return `${body.error.code}: ${body.error.message}`
  } catch {
    // not JSON: a proxy's error page
  }
  return `the server answered ${res.status}`
}

/** GETs JSON; rejects with the server's own words when it answers an error. */
export async function getJson<T>(url: string, signal?: AbortSignal): Promise<{ body: T; res: Response }> {
  const res = await fetch(url, { headers: { accept: 'application/json' }, ...(signal && { signal }) })
  if (!res.ok) throw new Error(await problemOf(res))
  return { body: (await res.json()) as T, res }
}

/** The `rel="next"` target of a `Link` header (RFC 8288), or null. */
export function nextLink(res: Response): string | null {
  return /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1] ?? null
}

/** `path?a=1&b=2`, leaving out the parameters that are undefined. */
export function withQuery(path: string, params: Record<string, string | number | undefined>): string {
  const query = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) if (value !== undefined) query.set(key, String(value))
  const text = query.toString()
  return text === '' ? path : `${path}?${text}`
}
