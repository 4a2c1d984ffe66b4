/**
 * Follows MQTT framing on a byte stream without parsing packets, so an
 * oversize packet is refused from its fixed header, before the parser buffers
 * it. aedes's parser has no size limit of its own: a header may declare up to
 * 256 MiB [MQTT-2.2.3] and the parser would wait for all of it.
 */
export class PacketSizeGuard {
  #remaining = 0 // bytes of the current packet body still to skip
  #length = 0 // remaining length being decoded
  #lengthBytes = 0
  #state: 'type' | 'length' | 'body' | 'malformed' = 'type'

  constructor(readonly maxPacketSize: number) {}

  /** Feeds one chunk. Returns the declared size of the first packet over the limit, or null. */
  push(chunk: Uint8Array): number | null {
    if (this.#state === 'malformed') return null
    let i = 0
    while (i < chunk.length) {
      if (this.#state === 'body') {
        const skip = Math.min(this.#remaining, chunk.length - i)
        i += skip
        this.#remaining -= skip
        if (this.#remaining === 0) this.#state = 'type'
        continue
      }
      const byte = chunk[i++]!
      if (this.#state === 'type') {
        this.#state = 'length'
        this.#length = 0
        this.#lengthBytes = 0
        continue
      }
      // [MQTT-2.2.3] remaining length: 7 bits a byte, at most 4 bytes
      this.#length += (byte & 0x7f) * 128 ** this.#lengthBytes++
      if (byte & 0x80) {
        // a fifth length byte is malformed: the parser rejects it and closes the connection
        if (this.#lengthBytes === 4) {
          this.#state = 'malformed'
          return null
        }
        continue
      }
      const size = 1 + this.#lengthBytes + this.#length
      if (size > this.maxPacketSize) return size
      this.#remaining = this.#length
      this.#state = this.#remaining === 0 ? 'type' : 'body'
    }
    return null
  }
}
