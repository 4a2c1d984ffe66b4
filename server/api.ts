import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { MAX_DEVICE_NAME, filterError, type DeviceHistory, type HealthReport, type Policy } from '../protocol/index.ts'
import type { Registry } from '../devices/registry.ts'
import type { HistoryStore } from '../store/history.ts'
import { sendError } from './http.ts'

/** Items in one page of `/api/devices` or `/api/topics`: the default, and the most a client may ask for. */
export const PAGE = { default: 500, max: 1000 }
/** The most points (or buckets) per metric a history request may ask for. */
export const MAX_HISTORY_POINTS = 100_000
/** Messages in one page of `/api/messages`: the default, and the most a client may ask for. */
export const MESSAGE_PAGE = { default: 100, max: 1000 }

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

const exportQuery = z
  .object({
    metrics: z.string().max(65535).optional(),
    from: epochMs.optional(),
    to: epochMs.optional(),
  })
  .strict()

const messagesQuery = z
  .object({
    topic: z.string().min(1).max(65535).optional(),
    before: epochMs.optional(),
    beforeId: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(MESSAGE_PAGE.max).default(MESSAGE_PAGE.default),
  })
  .strict()

const renameBody = z
  .object({
    /** null gives the device back the name its firmware announced. */
    name: z.string().trim().min(1).max(MAX_DEVICE_NAME).nullable(),
  })
  .strict()

type Paged = FastifyRequest<{ Querystring: { limit: number; cursor?: string } }>
type ById = FastifyRequest<{ Params: { id: string } }>
type History = FastifyRequest<{
  Params: { id: string }
  Querystring: { metrics?: string; from?: number; to?: number; since?: number; maxPoints?: number }
}>
type Export = FastifyRequest<{ Params: { id: string }; Querystring: { metrics?: string; from?: number; to?: number } }>
type Messages = FastifyRequest<{ Querystring: { topic?: string; before?: number; beforeId?: number; limit: number } }>
type Rename = FastifyRequest<{ Params: { id: string }; Body: { name: string | null } }>

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

  // renaming and forgetting change what everyone sees: those who may command the device may
  const mayChange = (req: FastifyRequest, reply: FastifyReply, id: string) =>
    policy.canCommand(req.principal, id) ? null : sendError(reply, 'E_NOT_AUTHORIZED', `${req.principal.name} may not change ${id}`)

  fastify.patch('/api/devices/:id', { schema: { params: deviceParams, body: renameBody } }, async (req: Rename, reply) => {
    if (!visible(req, req.params.id)) return unknownDevice(reply, req.params.id)
    return mayChange(req, reply, req.params.id) ?? registry.rename(req.params.id, req.body.name)
  })

  fastify.delete('/api/devices/:id', { schema: { params: deviceParams } }, async (req: ById, reply) => {
    if (!visible(req, req.params.id)) return unknownDevice(reply, req.params.id)
    const refused = mayChange(req, reply, req.params.id)
    if (refused) return refused
    registry.forget(req.params.id)
    return reply.code(204).send()
  })

  fastify.get('/api/devices/:id/export.csv', { schema: { params: deviceParams, querystring: exportQuery } }, async (req: Export, reply) => {
    const { id } = req.params
    if (!visible(req, id)) return unknownDevice(reply, id)
    const { metrics, from, to } = req.query
    if (from !== undefined && to !== undefined && from > to) return sendError(reply, 'E_INVALID_REQUEST', 'querystring/from must not be after to')
    const rows = store.exportCsv({
      device: id,
      ...(metrics !== undefined && { metrics: metrics.split(',').filter(Boolean) }),
      ...(from !== undefined && { from }),
      ...(to !== undefined && { to }),
    })
    // streamed with backpressure: a month of readings is read page by page as the client takes it
    const filename = `${id.replace(/[^\w.-]+/g, '_')}.csv`
    return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${filename}"`).send(Readable.from(rows))
  })

  fastify.get('/api/messages', { schema: { querystring: messagesQuery } }, async (req: Messages, reply) => {
    const { topic, before, beforeId, limit } = req.query
    const invalid = topic === undefined ? null : filterError(topic)
    if (invalid !== null) return sendError(reply, 'E_INVALID_FILTER', `querystring/topic: ${invalid}`)
    if (beforeId !== undefined && before === undefined) return sendError(reply, 'E_INVALID_REQUEST', 'querystring/beforeId needs before')
    const found = await store.messages({
      ...(topic !== undefined && { filter: topic }),
      ...(before !== undefined && { before }),
      ...(beforeId !== undefined && { beforeId }),
      limit: limit + 1,
    })
    const page = found.slice(0, limit)
    const last = page.at(-1)
    if (found.length > limit && last !== undefined) {
      const params = new URLSearchParams({ ...(topic !== undefined && { topic }), before: String(last.ts), beforeId: String(last.id), limit: String(limit) })
      void reply.header('link', `</api/messages?${params}>; rel="next"`)
    }
    return page.filter((m) => policy.canSubscribe(req.principal, m.topic))
  })

  fastify.get('/api/topics', { schema: { querystring: pageQuery } }, async (req: Paged, reply) => {
    const topics = registry.topics(Infinity, req.query.cursor).filter((t) => policy.canSubscribe(req.principal, t.topic))
    return sendPage(req, reply, topics.slice(0, req.query.limit + 1), (t) => t.topic)
  })
}
