import { Adapter, SessionAwareAdapter, type BroadcastOptions } from 'socket.io-adapter'
import type { Namespace } from 'socket.io'
import type { OnLimit } from '../protocol/limits.ts'

/** How long a `/live` client may be away and still be sent what it missed. */
export const RECOVERY_WINDOW_MS = 60_000

/** A broadcast SessionAwareAdapter keeps for clients that reconnect; its fields are private in the types. */
interface StoredPacket {
  id: string
}

/**
 * socket.io's connection state recovery, for `/live` only and bounded in bytes.
 *
 * A `/live` client that loses its connection and comes back within the window
 * is sent what was broadcast meanwhile, so its charts have no hole. socket.io
 * keeps every broadcast for the whole window, whatever its size; here the
 * oldest go once they add up to `maxBytes` (a client that was away longer
 * falls back to the history API). `/` keeps the tutorial's protocol: recovery
 * appends an offset argument to every event, which the Python clients would
 * receive as a second argument, so it stays off there.
 */
export function recoveryAdapter(namespace: string, maxBytes: number, onLimit: OnLimit): typeof Adapter {
  // socket.io calls `new adapter(nsp)` for each namespace; a constructor may return another object
  function PerNamespace(nsp: Namespace) {
    return nsp.name === namespace ? new BoundedSessionAdapter(nsp, maxBytes, onLimit) : new Adapter(nsp)
  }
  return PerNamespace as unknown as typeof Adapter
}

class BoundedSessionAdapter extends SessionAwareAdapter {
  readonly #maxBytes: number
  readonly #onLimit: OnLimit
  /** Sizes of the kept packets, oldest first, beside the parent's own list. */
  readonly #sizes: { id: string; bytes: number }[] = []
  #bytes = 0
  /** Bytes of the packet being broadcast, measured where it is encoded (once, as socket.io does anyway). */
  #encoded = 0

  constructor(nsp: Namespace, maxBytes: number, onLimit: OnLimit) {
    super(nsp)
    this.#maxBytes = maxBytes
    this.#onLimit = onLimit
    // the encoder is private in the types; socket.io-adapter 2.5 keeps it as `this.encoder`
    const { encoder } = this as unknown as { encoder: { encode(packet: unknown): unknown } }
    const measured = {
      encode: (packet: unknown) => {
        const out = encoder.encode(packet) as (string | Uint8Array)[]
        this.#encoded = out.reduce((sum, part) => sum + (typeof part === 'string' ? part.length : part.byteLength), 0)
        return out
      },
    }
    Object.defineProperty(this, 'encoder', { value: measured })
  }

  override broadcast(packet: unknown, opts: BroadcastOptions): void {
    const kept = this.#kept()
    const before = kept.length
    this.#encoded = 0
    super.broadcast(packet, opts)
    if (kept.length === before) return
    // the parent drops expired packets from the front on its own timer: follow it
    while (this.#sizes.length > 0 && this.#sizes[0]!.id !== kept[0]?.id) this.#bytes -= this.#sizes.shift()!.bytes
    this.#sizes.push({ id: kept[kept.length - 1]!.id, bytes: this.#encoded })
    this.#bytes += this.#encoded
    if (this.#bytes <= this.#maxBytes) return
    let dropped = 0
    while (this.#bytes > this.#maxBytes && this.#sizes.length > 1) {
      this.#bytes -= this.#sizes.shift()!.bytes
      kept.shift()
      dropped++
    }
    this.#onLimit('recovery_bytes', { dropped, bytes: this.#bytes })
  }

  #kept(): StoredPacket[] {
    return (this as unknown as { packets: StoredPacket[] }).packets
  }
}
