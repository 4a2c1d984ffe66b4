/**
 * The parts of the wire contract (`protocol/`) the dashboard uses. Imported file by file,
 * not through `protocol/index.ts`, so the server-side validators (zod) stay out of the bundle.
 */
export type { Ack, ErrorBody, ErrorCode, ErrorReply } from '../../../protocol/errors.ts'
export type { AppliedView, DeviceSelection, Envelope, LiveAuth, LiveView, LoggedEnvelope, MessageProperties, PublishRequest } from '../../../protocol/envelope.ts'
export type { Bucket, DeviceHistory, MetricHistory } from '../../../protocol/history.ts'
export type { CommandResult, LiveClientToServerEvents, LiveServerToClientEvents } from '../../../protocol/events.ts'
export { MAX_DEVICE_NAME } from '../../../protocol/limits.ts'
export type {
  CommandRequest,
  DeviceState,
  MetricState,
  TopicSummary,
} from '../../../protocol/devices.ts'
export type { DeviceFormat, Reading } from '../../../protocol/readings.ts'
export type { BrokerStatus, HealthReport } from '../../../protocol/health.ts'
export type { Rights, SessionInfo } from '../../../protocol/access.ts'
export { LIVE_NAMESPACE } from '../../../protocol/events.ts'
export { filterError, topicError, topicMatches } from '../../../protocol/topics.ts'
