import { nextLink } from './http.ts'

/** Pages of a listing fetched at most; the server's own bounds keep real listings far below this. */
const MAX_PAGES = 100

/**
 * Every item of a paged listing (`/api/devices`, `/api/topics`): the body is one page,
 * and `Link: <…>; rel="next"` says where the next one is. Null when the first page fails.
 */
export async function fetchAll<T>(url: string): Promise<T[] | null> {
  const items: T[] = []
  let next: string | null = url
  for (let page = 0; next !== null && page < MAX_PAGES; page++) {
    const res: Response = await fetch(next, { headers: { accept: 'application/json' } })
    const body: unknown = res.ok ? await res.json() : null
    if (!Array.isArray(body)) return page === 0 ? null : items
    items.push(...(body as T[]))
    next = nextLink(res)
  }
  return items
}
