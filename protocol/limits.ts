/**
 * Every bound that input can reach, by the name `/metrics` (`pulseboard_limit_hits_total{limit}`)
 * and `/api/health` (`limits`) count it under. docs/limits.md gives each one's default, flag, and
 * what a client gets when it hits it.
 */
export const LIMITS = {
  packet_size: 'an MQTT packet over --max-packet-size closed its connection',
  topic_length: 'a topic or filter over --max-topic-length was refused',
  connections: 'an MQTT connection over --max-connections was closed at once',
  keepalive: 'a keepalive of 0 or over --max-keepalive was capped to it',
  subscriptions: 'a subscription over --max-subscriptions for one client was refused (0x80)',
  retained: 'a retained message over --max-retained or --max-retained-bytes was delivered but not kept',
  session_queue: "a QoS 1/2 message over one offline session's --max-queued or --max-queued-bytes was dropped",
  queued_bytes: 'a QoS 1/2 message over --max-queued-total-bytes for all sessions was dropped',
  sessions: 'the least recently seen offline session was forgotten to stay within --max-sessions',
  flapping: 'a client id that connected more than --flap-max times in --flap-window was refused for a while',
  sockets: 'a socket.io connection over --max-sockets was refused',
  socket_backlog: 'a socket client with more than --max-socket-backlog bytes or 128 packets waiting was skipped',
  socket_lag: 'a socket client that lagged for more than --max-socket-lag was disconnected',
  recovery_bytes: 'the oldest broadcasts kept for /live clients that reconnect were dropped to stay within --max-recovery-bytes',
  devices: 'the least recently seen device was forgotten to stay within --max-devices',
  device_metrics: 'a metric over --max-metrics-per-device for one device was ignored',
  topics: 'a topic over --max-topics or --max-topic-index-bytes was left out of the topic index',
  history_points: "the least recently updated device's points were dropped from memory to stay within --max-history-points",
  store_queue: 'a reading or message over --store-max-queue (or --store-max-queue-bytes) waiting to be written to the database was dropped',
  cluster_device_bytes: 'a device whose state is over 1 MiB was not shared with the other nodes of the cluster, which do not show its changes',
} as const

export type LimitName = keyof typeof LIMITS

/** How a component reports that input reached one of its bounds; the server counts and logs it. */
export type OnLimit = (limit: LimitName, detail?: Record<string, unknown>) => void

/** The longest name a user may give a device (`PATCH /api/devices/:id`). */
export const MAX_DEVICE_NAME = 200

/** Devices one `/live` view may name (`LiveView.devices`, `.readings`); a page that shows more asks for every device. */
export const MAX_VIEW_DEVICES = 64
