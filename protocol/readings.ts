/**
 * Which firmware convention a device speaks. `topic` is the fallback for any
 * other topic: the topic levels name the device and the metric.
 */
export type DeviceFormat = 'generic' | 'tasmota' | 'esphome' | 'homie' | 'homeassistant' | 'topic'

/** One numeric sample from one device. */
export interface Reading {
  device: string
  metric: string
  /** Always finite; booleans and ON/OFF states are 1/0. */
  value: number
  /** Epoch milliseconds: the payload's own timestamp when plausible, otherwise the receive time. */
  ts: number
  unit?: string
}
