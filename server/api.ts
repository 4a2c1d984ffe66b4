import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import type { DeviceHistory, HealthReport, Policy } from '../protocol/index.ts'
import type { Registry } from '../devices/registry.ts'
import type { HistoryStore } from '../store/history.ts'
import { sendError } from './http.ts'

/** Items in one page of `/api/devices` or `/api/topics`: the default, and the most a client may ask for. */
export const PAGE = { default: 500, max: 1000 }
/** The most points (or buckets) per metric a history request may ask for. */
export const MAX_HISTORY_POINTS = 100_000

export interface ApiParts {
  registry: Registry
  store: HistoryStore
  policy: Policy
  health: () => HealthReport
  metrics: () => Promise<{ contentType: string; body: string }>
}

const pageQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(PAGE.max).default(PAGE.default),
    cursor: z.string().max(65535).optional(),
  })
  .strict()

const deviceParams = z.object({ id: z.string().min(1).max(1024) })

const epochMs = z.coerce.number().int().min(0)
const historyQuery = z
  .object({
    metrics: z.string().max(65535).optional(),
    from: epochMs.optional(),
    to: epochMs.optional(),
    /** The name before `from`; still read. */
    since: epochMs.optional(),
    maxPoints: z.coerce.number().int().min(1).max(MAX_HISTORY_POINTS).optional(),
  })
  .strict()

type Paged = FastifyRequest<{ Querystring: { limit: number; cursor?: string } }>
type ById = FastifyRequest<{ Params: { id: string } }>
type History = FastifyRequest<{
  Params: { id: string }
  Querystring: { metrics?: string; from?: number; to?: number; since?: number; maxPoints?: number }
}>

/** The HTTP API. Every list answers only what the request's principal may see. */
export function registerApi(fastify: FastifyInstance, parts: ApiParts): void {
  const { registry, store, policy } = parts

  fastify.get('/api/health', async () => parts.health())
  fastify.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await parts.metrics()
    return reply.type(contentType).send(body)
  })

  /** Sends one page; `Link: <…>; rel="next"` (RFC 8288) says where the next one is, so bodies stay plain arrays. */
  function sendPage<T>(req: Paged, reply: FastifyReply, items: T[], key: (item: T) => string): T[] {
    const { limit } = req.query
    const last = items[limit - 1]
    if (items.length > limit && last !== undefined) {
      const next = `${req.url.split('?')[0]}?limit=${limit}&cursor=${encodeURIComponent(key(last))}`
      void reply.header('link', `<${next}>; rel="next"`)
    }
    return items.slice(0, limit)
  }

  const unknownDevice = (reply: FastifyReply, id: string) => sendError(reply, 'E_UNKNOWN_DEVICE', `no device ${JSON.stringify(id)} is known`)
  const visible = (req: FastifyRequest, id: string) => policy.canSeeDevice(req.principal, id) && registry.get(id) !== undefined

  fastify.get('/api/devices', { schema: { querystring: pageQuery } }, async (req: Paged, reply) => {
    // a page beyond the visible ones: ask for one more than the limit to know whether there is a next
    const devices = registry.page(Infinity, req.query.cursor).filter((d) => policy.canSeeDevice(req.principal, d.id))
    return sendPage(req, reply, devices.slice(0, req.query.limit + 1), (d) => d.id)
  })

  fastify.get('/api/devices/:id', { schema: { params: deviceParams } }, async (req: ById, reply) => {
    if (!visible(req, req.params.id)) return unknownDevice(reply, req.params.id)
    return registry.get(req.params.id)
  })

  fastify.get('/api/devices/:id/history', { schema: { params: deviceParams, querystring: historyQuery } }, async (req: History, reply) => {
    const { id } = req.params
    if (!visible(req, id)) return unknownDevice(reply, id)
    const { metrics, from, since, to, maxPoints } = req.query
    if (from !== undefined && to !== undefined && from > to) return sendError(reply, 'E_INVALID_REQUEST', 'querystring/from must not be after to')
    const history: DeviceHistory = await store.query({
      device: id,
      ...(metrics !== undefined && { metrics: metrics.split(',').filter(Boolean) }),
      ...((from ?? since) !== undefined && { from: from ?? since }),
      ...(to !== undefined && { to }),
      ...(maxPoints !== undefined && { maxPoints }),
    })
    // the store keeps values; the registry knows what they are measured in
    const state = registry.get(id)
    for (const [name, series] of Object.entries(history.metrics)) {
      const unit = state?.metrics[name]?.unit
      if (unit !== undefined) series.unit = unit
    }
    return history
  })

  fastify.get('/api/topics', { schema: { querystring: pageQuery } }, async (req: Paged, reply) => {
    const topics = registry.topics(Infinity, req.query.cursor).filter((t) => policy.canSubscribe(req.principal, t.topic))
    return sendPage(req, reply, topics.slice(0, req.query.limit + 1), (t) => t.topic)
  })
}
