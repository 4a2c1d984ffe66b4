import { describe, expect, it } from 'vitest'
import { createReadingsParser, type DeviceFact, type ParseResult } from '../../formats/index.ts'
import type { Reading } from '../../protocol/index.ts'

/** Receive time used throughout: 2024-01-01T12:00:05Z. */
const T = Date.UTC(2024, 0, 1, 12, 0, 5)
/** 2024-01-01T12:00:00Z, the `Time` most fixtures carry. */
const T0 = Date.UTC(2024, 0, 1, 12, 0, 0)

type Message = [topic: string, payload: string]

/** Feed messages to a fresh parser; the result of the last one is returned. */
function run(...messages: Message[]): ParseResult {
  const parser = createReadingsParser()
  let last: ParseResult = { readings: [], facts: [] }
  for (const [topic, payload] of messages) last = parser.parse(topic, payload, T)
  return last
}

function r(device: string, metric: string, value: number, unit?: string, ts = T): Reading {
  return unit === undefined ? { device, metric, value, ts } : { device, metric, value, ts, unit }
}

interface Case {
  name: string
  /** Earlier messages (announcements); only the last message's result is checked. */
  before?: Message[]
  message: Message
  readings: Reading[]
  facts: DeviceFact[]
}

function table(cases: Case[]): void {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const result = run(...(c.before ?? []), c.message)
    expect(result.readings).toEqual(c.readings)
    expect(result.facts).toEqual(c.facts)
  })
}

describe('generic devices/<id>/...', () => {
  table([
    {
      name: 'telemetry object: numbers, nested objects as a.b, booleans as binary 1/0',
      message: ['devices/d1/telemetry', '{"temp":21.5,"env":{"hum":40,"co2":{"ppm":420}},"door":true,"label":"x"}'],
      readings: [r('d1', 'temp', 21.5), r('d1', 'env.hum', 40), r('d1', 'env.co2.ppm', 420), r('d1', 'door', 1)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1', binary: ['door'] }],
    },
    {
      name: 'ON/OFF strings in telemetry are on/off states, as on devices/<id>/<metric>',
      message: ['devices/d1/telemetry', '{"relay":"ON","fan":"off","mode":"eco"}'],
      readings: [r('d1', 'relay', 1), r('d1', 'fan', 0)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1', binary: ['relay', 'fan'] }],
    },
    {
      name: 'units from the optional units object; bad ones ignored',
      message: ['devices/d1/telemetry', '{"temp":21.5,"hum":40,"co2":400,"units":{"temp":"°C","hum":"%","co2":7,"__proto__":"x"}}'],
      readings: [r('d1', 'temp', 21.5, '°C'), r('d1', 'hum', 40, '%'), r('d1', 'co2', 400)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1' }],
    },
    {
      name: 'plain number becomes metric "value"',
      message: ['devices/d1/telemetry', '23.75'],
      readings: [r('d1', 'value', 23.75)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1' }],
    },
    {
      name: 'ts in epoch ms overrides the receive time',
      message: ['devices/d1/telemetry', `{"ts":${T0},"temp":1}`],
      readings: [r('d1', 'temp', 1, undefined, T0)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1' }],
    },
    {
      name: 'ts as ISO string with zone',
      message: ['devices/d1/telemetry', '{"ts":"2024-01-01T13:00:00+01:00","temp":1}'],
      readings: [r('d1', 'temp', 1, undefined, T0)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1' }],
    },
    {
      name: 'implausible ts (epoch seconds read as ms = 1970) falls back to receive time',
      message: ['devices/d1/telemetry', '{"ts":1704110400,"temp":1}'],
      readings: [r('d1', 'temp', 1)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1' }],
    },
    {
      name: 'ts in the future falls back to receive time',
      message: ['devices/d1/telemetry', `{"ts":${T + 3600_000},"temp":1}`],
      readings: [r('d1', 'temp', 1)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1' }],
    },
    {
      name: 'status online',
      message: ['devices/d1/status', 'online'],
      readings: [],
      facts: [{ device: 'd1', format: 'generic', online: true, commandBase: 'devices/d1' }],
    },
    {
      name: 'status offline',
      message: ['devices/d1/status', 'offline'],
      readings: [],
      facts: [{ device: 'd1', format: 'generic', online: false, commandBase: 'devices/d1' }],
    },
    {
      name: 'status with other text is ignored',
      message: ['devices/d1/status', 'rebooting'],
      readings: [],
      facts: [],
    },
    {
      name: 'devices/<id>/<metric> scalar stays on the same device',
      message: ['devices/d1/relay', 'ON'],
      readings: [r('d1', 'relay', 1)],
      facts: [{ device: 'd1', format: 'generic', commandBase: 'devices/d1', binary: ['relay'] }],
    },
    {
      name: 'the command topic is never a reading',
      message: ['devices/d1/commands', '{"name":"relay","value":1}'],
      readings: [],
      facts: [],
    },
  ])
})

describe('Tasmota', () => {
  table([
    {
      name: "Tasmota's own discovery announcements are configuration, not devices",
      message: ['tasmota/discovery/A4CF12345678/sensors', '{"sn":{"Time":"2024-01-01T12:00:00","ENERGY":{"Power":5}},"ver":1}'],
      readings: [],
      facts: [],
    },
    {
      name: 'tele SENSOR AM2301 with TempUnit C; Time within the window is used',
      message: [
        'tele/tasmota_1/SENSOR',
        '{"Time":"2024-01-01T12:00:00","AM2301":{"Temperature":22.1,"Humidity":45.3,"DewPoint":9.7},"TempUnit":"C"}',
      ],
      readings: [
        r('tasmota_1', 'AM2301.Temperature', 22.1, '°C', T0),
        r('tasmota_1', 'AM2301.Humidity', 45.3, '%', T0),
        r('tasmota_1', 'AM2301.DewPoint', 9.7, '°C', T0),
      ],
      facts: [{ device: 'tasmota_1', format: 'tasmota', commandBase: 'tasmota_1' }],
    },
    {
      name: 'tele SENSOR with TempUnit F and PressureUnit',
      message: [
        'tele/bme/SENSOR',
        '{"Time":"2024-01-01T12:00:00","BME280":{"Temperature":70.2,"Humidity":49.6,"Pressure":759.5},"PressureUnit":"mmHg","TempUnit":"F"}',
      ],
      readings: [
        r('bme', 'BME280.Temperature', 70.2, '°F', T0),
        r('bme', 'BME280.Humidity', 49.6, '%', T0),
        r('bme', 'BME280.Pressure', 759.5, 'mmHg', T0),
      ],
      facts: [{ device: 'bme', format: 'tasmota', commandBase: 'bme' }],
    },
    {
      name: 'tele SENSOR ENERGY block (Sonoff POW)',
      message: [
        'tele/pow/SENSOR',
        '{"Time":"2024-01-01T12:00:00","ENERGY":{"TotalStartTime":"2023-01-01T00:00:00","Total":12.345,"Yesterday":0.923,"Today":0.337,"Power":367,"ApparentPower":507,"ReactivePower":350,"Factor":0.72,"Voltage":235,"Current":2.156}}',
      ],
      readings: [
        r('pow', 'ENERGY.Total', 12.345, 'kWh', T0),
        r('pow', 'ENERGY.Yesterday', 0.923, 'kWh', T0),
        r('pow', 'ENERGY.Today', 0.337, 'kWh', T0),
        r('pow', 'ENERGY.Power', 367, 'W', T0),
        r('pow', 'ENERGY.ApparentPower', 507, 'VA', T0),
        r('pow', 'ENERGY.ReactivePower', 350, 'var', T0),
        r('pow', 'ENERGY.Factor', 0.72, undefined, T0),
        r('pow', 'ENERGY.Voltage', 235, 'V', T0),
        r('pow', 'ENERGY.Current', 2.156, 'A', T0),
      ],
      facts: [{ device: 'pow', format: 'tasmota', commandBase: 'pow' }],
    },
    {
      name: 'three-phase arrays keep the unit of their key',
      message: ['tele/meter/SENSOR', '{"Time":"2024-01-01T12:00:00","ENERGY":{"Voltage":[230,231.5]}}'],
      readings: [r('meter', 'ENERGY.Voltage.0', 230, 'V', T0), r('meter', 'ENERGY.Voltage.1', 231.5, 'V', T0)],
      facts: [{ device: 'meter', format: 'tasmota', commandBase: 'meter' }],
    },
    {
      name: 'SENSOR Switch1 ON is binary',
      message: ['tele/tasmota_9CF9D1/SENSOR', '{"Time":"2024-01-01T12:00:00","Switch1":"ON"}'],
      readings: [r('tasmota_9CF9D1', 'Switch1', 1, undefined, T0)],
      facts: [{ device: 'tasmota_9CF9D1', format: 'tasmota', commandBase: 'tasmota_9CF9D1', binary: ['Switch1'] }],
    },
    {
      name: 'tele STATE: POWER binary, numeric fields, Wifi RSSI/Signal; strings dropped',
      message: [
        'tele/tasmota_9CF9D1/STATE',
        '{"Time":"2024-01-01T12:00:00","Uptime":"0T00:10:11","UptimeSec":611,"Heap":24,"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER":"OFF","Wifi":{"AP":1,"SSId":"ESP-Network","BSSId":"E6:8D:8C:4B:BE:F7","Channel":3,"Mode":"11n","RSSI":44,"Signal":-78,"LinkCount":1,"Downtime":"0T00:00:05"}}',
      ],
      readings: [
        r('tasmota_9CF9D1', 'UptimeSec', 611, 's', T0),
        r('tasmota_9CF9D1', 'Heap', 24, 'kB', T0),
        r('tasmota_9CF9D1', 'Sleep', 50, 'ms', T0),
        r('tasmota_9CF9D1', 'LoadAvg', 19, undefined, T0),
        r('tasmota_9CF9D1', 'MqttCount', 1, undefined, T0),
        r('tasmota_9CF9D1', 'POWER', 0, undefined, T0),
        r('tasmota_9CF9D1', 'Wifi.AP', 1, undefined, T0),
        r('tasmota_9CF9D1', 'Wifi.Channel', 3, undefined, T0),
        r('tasmota_9CF9D1', 'Wifi.RSSI', 44, '%', T0),
        r('tasmota_9CF9D1', 'Wifi.Signal', -78, 'dBm', T0),
        r('tasmota_9CF9D1', 'Wifi.LinkCount', 1, undefined, T0),
      ],
      facts: [{ device: 'tasmota_9CF9D1', format: 'tasmota', commandBase: 'tasmota_9CF9D1', binary: ['POWER'] }],
    },
    {
      name: 'tele STATE with POWER1/POWER2',
      message: ['tele/sonoffTenda/STATE', '{"Time":"2024-01-01T12:00:00","POWER1":"OFF","POWER2":"ON"}'],
      readings: [r('sonoffTenda', 'POWER1', 0, undefined, T0), r('sonoffTenda', 'POWER2', 1, undefined, T0)],
      facts: [{ device: 'sonoffTenda', format: 'tasmota', commandBase: 'sonoffTenda', binary: ['POWER1', 'POWER2'] }],
    },
    {
      name: 'Time in another zone (1 h off) is not trusted',
      message: ['tele/t/SENSOR', '{"Time":"2024-01-01T13:00:00","DS18B20":{"Temperature":20}}'],
      readings: [r('t', 'DS18B20.Temperature', 20, '°C')],
      facts: [{ device: 't', format: 'tasmota', commandBase: 't' }],
    },
    {
      name: 'tele LWT Online',
      message: ['tele/tasmota_28AF0B/LWT', 'Online'],
      readings: [],
      facts: [{ device: 'tasmota_28AF0B', format: 'tasmota', online: true, commandBase: 'tasmota_28AF0B' }],
    },
    {
      name: 'tele LWT Offline',
      message: ['tele/tasmota_28AF0B/LWT', 'Offline'],
      readings: [],
      facts: [{ device: 'tasmota_28AF0B', format: 'tasmota', online: false, commandBase: 'tasmota_28AF0B' }],
    },
    {
      name: 'stat POWER ON',
      message: ['stat/tasmota_D460E6/POWER', 'ON'],
      readings: [r('tasmota_D460E6', 'POWER', 1)],
      facts: [{ device: 'tasmota_D460E6', format: 'tasmota', commandBase: 'tasmota_D460E6', binary: ['POWER'] }],
    },
    {
      name: 'stat POWER2 OFF',
      message: ['stat/sonoffTenda/POWER2', 'OFF'],
      readings: [r('sonoffTenda', 'POWER2', 0)],
      facts: [{ device: 'sonoffTenda', format: 'tasmota', commandBase: 'sonoffTenda', binary: ['POWER2'] }],
    },
    {
      name: 'stat RESULT {"POWER":"ON"}',
      message: ['stat/tasmota_D460E6/RESULT', '{"POWER":"ON"}'],
      readings: [r('tasmota_D460E6', 'POWER', 1)],
      facts: [{ device: 'tasmota_D460E6', format: 'tasmota', commandBase: 'tasmota_D460E6', binary: ['POWER'] }],
    },
    {
      name: 'stat RESULT {"Command":"Unknown"} gives nothing',
      message: ['stat/tasmota_5A9AE8/RESULT', '{"Command":"Unknown"}'],
      readings: [],
      facts: [],
    },
    {
      name: 'stat STATUS10 unwraps StatusSNS like SENSOR',
      message: [
        'stat/tasmota_C59B5E/STATUS10',
        '{"StatusSNS":{"Time":"2024-01-01T12:00:00","DHT11":{"Temperature":23.0,"Humidity":37.0},"TempUnit":"C"}}',
      ],
      readings: [
        r('tasmota_C59B5E', 'DHT11.Temperature', 23, '°C', T0),
        r('tasmota_C59B5E', 'DHT11.Humidity', 37, '%', T0),
      ],
      facts: [{ device: 'tasmota_C59B5E', format: 'tasmota', commandBase: 'tasmota_C59B5E' }],
    },
    {
      name: 'stat STATUS gives the device name',
      message: ['stat/kitchen/STATUS', '{"Status":{"Module":1,"DeviceName":"Kitchen plug","FriendlyName":["Kitchen"],"Power":0}}'],
      readings: [],
      facts: [{ device: 'kitchen', format: 'tasmota', name: 'Kitchen plug', commandBase: 'kitchen' }],
    },
    {
      name: 'cmnd topics are never readings',
      message: ['cmnd/tasmota_28AF0B/POWER', 'ON'],
      readings: [],
      facts: [],
    },
    {
      name: 'INFO1 boot information gives nothing',
      message: ['tele/x/INFO1', '{"Info1":{"Module":"Shelly Dimmer","Version":"8.3.1.2(tasmota)"}}'],
      readings: [],
      facts: [],
    },
  ])
})

describe('ESPHome', () => {
  table([
    {
      name: 'sensor state is a number; device is the prefix',
      message: ['livingroom/sensor/temperature/state', '21.5'],
      readings: [r('livingroom', 'temperature', 21.5)],
      facts: [{ device: 'livingroom', format: 'esphome', commandBase: 'livingroom' }],
    },
    {
      name: 'binary_sensor ON is binary, not commandable',
      message: ['livingroom/binary_sensor/motion/state', 'ON'],
      readings: [r('livingroom', 'motion', 1)],
      facts: [{ device: 'livingroom', format: 'esphome', commandBase: 'livingroom', binary: ['motion'] }],
    },
    {
      name: 'switch OFF is binary and commandable',
      message: ['livingroom/switch/relay/state', 'OFF'],
      readings: [r('livingroom', 'relay', 0)],
      facts: [
        {
          device: 'livingroom',
          format: 'esphome',
          commandBase: 'livingroom',
          commands: { relay: 'livingroom/switch/relay/command' },
          binary: ['relay'],
        },
      ],
    },
    {
      name: 'number state is commandable',
      message: ['node1/number/setpoint/state', '22'],
      readings: [r('node1', 'setpoint', 22)],
      facts: [
        {
          device: 'node1',
          format: 'esphome',
          commandBase: 'node1',
          commands: { setpoint: 'node1/number/setpoint/command' },
        },
      ],
    },
    {
      name: 'multi-level prefix',
      message: ['home/livingroom/sensor/humidity/state', '48'],
      readings: [r('home/livingroom', 'humidity', 48)],
      facts: [{ device: 'home/livingroom', format: 'esphome', commandBase: 'home/livingroom' }],
    },
    {
      name: 'climate current_temperature sub-state: reading, no command',
      message: ['hvac/climate/living/current_temperature/state', '20.5'],
      readings: [r('hvac', 'living.current_temperature', 20.5)],
      facts: [{ device: 'hvac', format: 'esphome', commandBase: 'hvac' }],
    },
    {
      name: 'climate target_temperature sub-state is commandable',
      message: ['hvac/climate/living/target_temperature/state', '21'],
      readings: [r('hvac', 'living.target_temperature', 21)],
      facts: [
        {
          device: 'hvac',
          format: 'esphome',
          commandBase: 'hvac',
          commands: { 'living.target_temperature': 'hvac/climate/living/target_temperature/command' },
        },
      ],
    },
    {
      name: 'light JSON state: state is the binary metric, brightness a number',
      message: ['desk/light/lamp/state', '{"state":"ON","brightness":255,"color_mode":"brightness"}'],
      readings: [r('desk', 'lamp', 1), r('desk', 'lamp.brightness', 255)],
      facts: [
        {
          device: 'desk',
          format: 'esphome',
          commandBase: 'desk',
          commands: { lamp: 'desk/light/lamp/command' },
          binary: ['lamp'],
        },
      ],
    },
    {
      name: 'text_sensor text gives no reading but the device is known',
      message: ['node1/text_sensor/version/state', '2024.6.1'],
      readings: [],
      facts: [{ device: 'node1', format: 'esphome', commandBase: 'node1' }],
    },
    {
      name: 'status online after a state topic is ESPHome',
      before: [['livingroom/sensor/temperature/state', '21.5']],
      message: ['livingroom/status', 'online'],
      readings: [],
      facts: [{ device: 'livingroom', format: 'esphome', online: true, commandBase: 'livingroom' }],
    },
    {
      name: 'status offline before any state topic is attributed to the same id as topic format',
      message: ['livingroom/status', 'offline'],
      readings: [],
      facts: [{ device: 'livingroom', format: 'topic', online: false, commandBase: 'livingroom' }],
    },
    {
      name: 'command topic is never a reading',
      message: ['livingroom/switch/relay/command', 'ON'],
      readings: [],
      facts: [],
    },
  ])
})

describe('Homie', () => {
  const v4Announce: Message[] = [
    ['homie/super-car/$homie', '4.0.0'],
    ['homie/super-car/$name', 'Super car'],
    ['homie/super-car/$state', 'ready'],
    ['homie/super-car/engine/$name', 'Car engine'],
    ['homie/super-car/engine/$properties', 'temperature,power'],
    ['homie/super-car/engine/temperature/$name', 'Engine temperature'],
    ['homie/super-car/engine/temperature/$settable', 'false'],
    ['homie/super-car/engine/temperature/$unit', '°C'],
    ['homie/super-car/engine/temperature/$datatype', 'float'],
    ['homie/super-car/engine/power/$name', 'Power'],
    ['homie/super-car/engine/power/$datatype', 'boolean'],
    ['homie/super-car/engine/power/$settable', 'true'],
  ]
  const v5Description = JSON.stringify({
    homie: '5.0',
    name: 'Kitchen light',
    version: 7,
    nodes: {
      light: {
        name: 'Light',
        properties: {
          power: { name: 'Power', datatype: 'boolean', settable: true },
          brightness: { name: 'Brightness', datatype: 'integer', settable: true, unit: '%', format: '0:100' },
          mode: { name: 'Mode', datatype: 'enum', format: 'warm,cold' },
        },
      },
    },
  })
  const v5Facts: DeviceFact = {
    device: 'kitchen-light',
    format: 'homie',
    name: 'Kitchen light',
    commandBase: 'homie/5/kitchen-light',
    commands: {
      'light.power': 'homie/5/kitchen-light/light/power/set',
      'light.brightness': 'homie/5/kitchen-light/light/brightness/set',
    },
    binary: ['light.power'],
    labels: { 'light.power': 'Power', 'light.brightness': 'Brightness', 'light.mode': 'Mode' },
  }

  table([
    {
      name: 'v4 $state ready is online',
      message: ['homie/super-car/$state', 'ready'],
      readings: [],
      facts: [{ device: 'super-car', format: 'homie', online: true, commandBase: 'homie/super-car' }],
    },
    {
      name: 'v4 $state init is online',
      message: ['homie/super-car/$state', 'init'],
      readings: [],
      facts: [{ device: 'super-car', format: 'homie', online: true, commandBase: 'homie/super-car' }],
    },
    ...(['lost', 'disconnected', 'sleeping'] as const).map(
      (s): Case => ({
        name: `v4 $state ${s} is offline`,
        message: ['homie/super-car/$state', s],
        readings: [],
        facts: [{ device: 'super-car', format: 'homie', online: false, commandBase: 'homie/super-car' }],
      }),
    ),
    {
      name: 'v4 $name is the device name',
      message: ['homie/super-car/$name', 'Super car'],
      readings: [],
      facts: [{ device: 'super-car', format: 'homie', name: 'Super car', commandBase: 'homie/super-car' }],
    },
    {
      name: 'v4 float property takes its announced $unit and $name',
      before: v4Announce,
      message: ['homie/super-car/engine/temperature', '21.5'],
      readings: [r('super-car', 'engine.temperature', 21.5, '°C')],
      facts: [
        {
          device: 'super-car',
          format: 'homie',
          commandBase: 'homie/super-car',
          labels: { 'engine.temperature': 'Engine temperature' },
        },
      ],
    },
    {
      name: 'v4 settable boolean property: binary with a /set command',
      before: v4Announce,
      message: ['homie/super-car/engine/power', 'true'],
      readings: [r('super-car', 'engine.power', 1)],
      facts: [
        {
          device: 'super-car',
          format: 'homie',
          commandBase: 'homie/super-car',
          commands: { 'engine.power': 'homie/super-car/engine/power/set' },
          binary: ['engine.power'],
          labels: { 'engine.power': 'Power' },
        },
      ],
    },
    {
      name: 'v4 $settable announcement is a fact on its own',
      message: ['homie/super-car/engine/power/$settable', 'true'],
      readings: [],
      facts: [
        {
          device: 'super-car',
          format: 'homie',
          commandBase: 'homie/super-car',
          commands: { 'engine.power': 'homie/super-car/engine/power/set' },
        },
      ],
    },
    {
      name: 'v3 property without announcements still reads numbers',
      message: ['homie/sensor-1/climate/humidity', '40'],
      readings: [r('sensor-1', 'climate.humidity', 40)],
      facts: [{ device: 'sensor-1', format: 'homie', commandBase: 'homie/sensor-1' }],
    },
    {
      name: '/set topics are never readings',
      before: v4Announce,
      message: ['homie/super-car/engine/power/set', 'true'],
      readings: [],
      facts: [],
    },
    {
      name: 'node attributes give nothing',
      message: ['homie/super-car/engine/$properties', 'temperature,power'],
      readings: [],
      facts: [],
    },
    {
      name: 'v5 $description announces name, commands, binary and labels',
      message: ['homie/5/kitchen-light/$description', v5Description],
      readings: [],
      facts: [v5Facts],
    },
    {
      name: 'v5 integer property takes the unit from $description',
      before: [['homie/5/kitchen-light/$description', v5Description]],
      message: ['homie/5/kitchen-light/light/brightness', '80'],
      readings: [r('kitchen-light', 'light.brightness', 80, '%')],
      facts: [
        {
          device: 'kitchen-light',
          format: 'homie',
          commandBase: 'homie/5/kitchen-light',
          commands: { 'light.brightness': 'homie/5/kitchen-light/light/brightness/set' },
          labels: { 'light.brightness': 'Brightness' },
        },
      ],
    },
    {
      name: 'v5 enum property gives no reading',
      before: [['homie/5/kitchen-light/$description', v5Description]],
      message: ['homie/5/kitchen-light/light/mode', 'warm'],
      readings: [],
      facts: [
        {
          device: 'kitchen-light',
          format: 'homie',
          commandBase: 'homie/5/kitchen-light',
          labels: { 'light.mode': 'Mode' },
        },
      ],
    },
    {
      name: 'v5 $state lost',
      message: ['homie/5/kitchen-light/$state', 'lost'],
      readings: [],
      facts: [{ device: 'kitchen-light', format: 'homie', online: false, commandBase: 'homie/5/kitchen-light' }],
    },
    {
      name: 'v5 $target is not a reading',
      message: ['homie/5/kitchen-light/light/brightness/$target', '100'],
      readings: [],
      facts: [],
    },
  ])
})

describe('Home Assistant discovery', () => {
  // As Tasmota's legacy discovery publishes it (abbreviated keys, bracket templates).
  const tasmotaTotal: Message = [
    'homeassistant/sensor/218FF9_ENERGY_Total/config',
    '{"name":"plug001 ENERGY Total","stat_t":"tele/plug001/SENSOR","avty_t":"tele/plug001/LWT","pl_avail":"Online","pl_not_avail":"Offline","uniq_id":"218FF9_ENERGY_Total","dev":{"ids":["218FF9"]},"unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","frc_upd":true,"val_tpl":"{{value_json[\'ENERGY\'][\'Total\']}}"}',
  ]
  const tasmotaToday: Message = [
    'homeassistant/sensor/218FF9_ENERGY_Today/config',
    '{"name":"plug001 ENERGY Today","stat_t":"tele/plug001/SENSOR","avty_t":"tele/plug001/LWT","pl_avail":"Online","pl_not_avail":"Offline","uniq_id":"218FF9_ENERGY_Today","dev":{"ids":["218FF9"]},"unit_of_meas":"kWh","val_tpl":"{{value_json[\'ENERGY\'][\'Today\']}}"}',
  ]
  // As HA's own documentation shows it: two sensors on one state topic.
  const bedroomT: Message = [
    'homeassistant/sensor/sensorBedroomT/config',
    '{"device_class":"temperature","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"°C","value_template":"{{ value_json.temperature}}","unique_id":"temp01ae","device":{"identifiers":["bedroom01ae"],"name":"Bedroom"}}',
  ]
  const bedroomH: Message = [
    'homeassistant/sensor/sensorBedroomH/config',
    '{"device_class":"humidity","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"%","value_template":"{{ value_json.humidity}}","unique_id":"hum01ae","device":{"identifiers":["bedroom01ae"],"name":"Bedroom"}}',
  ]
  // As ESPHome publishes it: identifiers as a string, state topic that ESPHome also owns.
  const esphomeTemp: Message = [
    'homeassistant/sensor/livingroom/temperature/config',
    '{"dev_cla":"temperature","unit_of_meas":"°C","stat_cla":"measurement","name":"Temperature","stat_t":"livingroom/sensor/temperature/state","avty_t":"livingroom/status","uniq_id":"ESPsensortemperature","dev":{"ids":"24dcc3a1b2c4","name":"livingroom","sw":"esphome v2024.6.1","mdl":"nodemcuv2","mf":"espressif"}}',
  ]
  const esphomeRelay: Message = [
    'homeassistant/switch/livingroom/relay/config',
    '{"name":"Relay","stat_t":"livingroom/switch/relay/state","cmd_t":"livingroom/switch/relay/command","avty_t":"livingroom/status","uniq_id":"ESPswitchrelay","dev":{"ids":"24dcc3a1b2c4","name":"livingroom"}}',
  ]
  // HA documentation's `~` example.
  const kitchenLight: Message = [
    'homeassistant/light/kitchen/config',
    '{"~":"homeassistant/light/kitchen","name":"Kitchen","uniq_id":"kitchenlight","cmd_t":"~/set","stat_t":"~/state","schema":"json","brightness":true}',
  ]

  table([
    {
      name: 'config announces the device',
      message: tasmotaTotal,
      readings: [],
      facts: [{ device: '218FF9', format: 'homeassistant' }],
    },
    {
      name: 'Tasmota SENSOR through two discovery entries (bracket templates), not Tasmota rules',
      before: [tasmotaTotal, tasmotaToday],
      message: ['tele/plug001/SENSOR', '{"Time":"2024-01-01T12:00:00","ENERGY":{"Total":12.345,"Today":0.337,"Power":40}}'],
      readings: [r('218FF9', 'plug001 ENERGY Total', 12.345, 'kWh'), r('218FF9', 'plug001 ENERGY Today', 0.337, 'kWh')],
      facts: [{ device: '218FF9', format: 'homeassistant' }],
    },
    {
      name: 'availability with custom payloads',
      before: [tasmotaTotal],
      message: ['tele/plug001/LWT', 'Offline'],
      readings: [],
      facts: [{ device: '218FF9', format: 'homeassistant', online: false }],
    },
    {
      name: 'HA docs: two sensors share a state topic',
      before: [bedroomT, bedroomH],
      message: ['homeassistant/sensor/sensorBedroom/state', '{"temperature":23.20,"humidity":43.70}'],
      readings: [r('bedroom01ae', 'sensorBedroomT', 23.2, '°C'), r('bedroom01ae', 'sensorBedroomH', 43.7, '%')],
      facts: [{ device: 'bedroom01ae', format: 'homeassistant', name: 'Bedroom' }],
    },
    {
      name: 'ESPHome state topic mapped by discovery takes priority over ESPHome rules',
      before: [esphomeTemp],
      message: ['livingroom/sensor/temperature/state', '21.5'],
      readings: [r('24dcc3a1b2c4', 'Temperature', 21.5, '°C')],
      facts: [{ device: '24dcc3a1b2c4', format: 'homeassistant', name: 'livingroom' }],
    },
    {
      name: 'default availability payloads online/offline',
      before: [esphomeTemp],
      message: ['livingroom/status', 'online'],
      readings: [],
      facts: [{ device: '24dcc3a1b2c4', format: 'homeassistant', online: true }],
    },
    {
      name: 'switch with cmd_t: binary and commandable',
      before: [esphomeRelay],
      message: ['livingroom/switch/relay/state', 'ON'],
      readings: [r('24dcc3a1b2c4', 'Relay', 1)],
      facts: [
        {
          device: '24dcc3a1b2c4',
          format: 'homeassistant',
          name: 'livingroom',
          commands: { Relay: 'livingroom/switch/relay/command' },
          binary: ['Relay'],
        },
      ],
    },
    {
      name: 'switch config announces its command',
      message: esphomeRelay,
      readings: [],
      facts: [
        {
          device: '24dcc3a1b2c4',
          format: 'homeassistant',
          name: 'livingroom',
          commands: { Relay: 'livingroom/switch/relay/command' },
          binary: ['Relay'],
        },
      ],
    },
    {
      name: '~ base topic and JSON-schema light (HA docs example); device id falls back to object_id',
      before: [kitchenLight],
      message: ['homeassistant/light/kitchen/state', '{"state":"ON","brightness":255}'],
      readings: [r('kitchen', 'Kitchen', 1)],
      facts: [
        {
          device: 'kitchen',
          format: 'homeassistant',
          commands: { Kitchen: 'homeassistant/light/kitchen/set' },
          binary: ['Kitchen'],
        },
      ],
    },
    {
      name: 'node_id is the device and object_id the metric when there is no device or name',
      before: [['homeassistant/sensor/garden/soil/config', '{"stat_t":"garden/soil","unit_of_meas":"%"}']],
      message: ['garden/soil', '31'],
      readings: [r('garden', 'soil', 31, '%')],
      facts: [{ device: 'garden', format: 'homeassistant' }],
    },
    {
      name: 'value_json.x.y with | float | round(1)',
      before: [
        [
          'homeassistant/sensor/ws/t/config',
          '{"name":"Outside","stat_t":"ws/data","val_tpl":"{{ value_json.outdoor.temp | float | round(1) }}","unit_of_meas":"°C","dev":{"ids":["ws1"]}}',
        ],
      ],
      message: ['ws/data', '{"outdoor":{"temp":"12.46"}}'],
      readings: [r('ws1', 'Outside', 12.5, '°C')],
      facts: [{ device: 'ws1', format: 'homeassistant' }],
    },
    {
      name: '{{ value }} template reads the raw payload',
      before: [['homeassistant/sensor/x/config', '{"name":"Level","stat_t":"tank/level","val_tpl":"{{ value }}"}']],
      message: ['tank/level', '73'],
      readings: [r('x', 'Level', 73)],
      facts: [{ device: 'x', format: 'homeassistant' }],
    },
    {
      name: 'unsupported template: mapped topic gives nothing rather than a wrong value',
      before: [
        ['homeassistant/sensor/x/config', '{"name":"Level","stat_t":"tank/level","val_tpl":"{{ value | float * 10 }}"}'],
      ],
      message: ['tank/level', '73'],
      readings: [],
      facts: [],
    },
    {
      name: 'availability list with its own payloads and template',
      before: [
        [
          'homeassistant/binary_sensor/door/config',
          '{"name":"Door","stat_t":"z2m/door","val_tpl":"{{ value_json.contact }}","pl_on":false,"pl_off":true,"avty":[{"t":"z2m/bridge/state","val_tpl":"{{ value_json.state }}"}],"dev":{"ids":["0x00158d0001"]}}',
        ],
      ],
      message: ['z2m/bridge/state', '{"state":"offline"}'],
      readings: [],
      facts: [{ device: '0x00158d0001', format: 'homeassistant', online: false }],
    },
    {
      name: 'binary_sensor with custom payload_on/payload_off',
      before: [
        [
          'homeassistant/binary_sensor/garage/door/config',
          '{"name":"Garage door","stat_t":"garage/door","pl_on":"open","pl_off":"closed","dev":{"ids":["garage1"]}}',
        ],
      ],
      message: ['garage/door', 'closed'],
      readings: [r('garage1', 'Garage door', 0)],
      facts: [{ device: 'garage1', format: 'homeassistant', binary: ['Garage door'] }],
    },
    {
      name: 'device-based discovery (cmps) with shared state topic',
      before: [
        [
          'homeassistant/device/multi1/config',
          '{"dev":{"ids":"multi1","name":"Multi sensor"},"o":{"name":"fw"},"stat_t":"multi1/state","cmps":{"t1":{"p":"sensor","name":"Temperature","unit_of_meas":"°C","val_tpl":"{{ value_json.temperature }}"},"h1":{"p":"sensor","unit_of_meas":"%","val_tpl":"{{ value_json.humidity }}"}}}',
        ],
      ],
      message: ['multi1/state', '{"temperature":21.1,"humidity":55}'],
      readings: [r('multi1', 'Temperature', 21.1, '°C'), r('multi1', 'h1', 55, '%')],
      facts: [{ device: 'multi1', format: 'homeassistant', name: 'Multi sensor' }],
    },
    {
      name: 'an empty config payload removes the mapping; the topic is ESPHome again',
      before: [esphomeTemp, ['homeassistant/sensor/livingroom/temperature/config', '']],
      message: ['livingroom/sensor/temperature/state', '21.5'],
      readings: [r('livingroom', 'temperature', 21.5)],
      facts: [{ device: 'livingroom', format: 'esphome', commandBase: 'livingroom' }],
    },
    {
      name: 'a broken config leaves the previous one in force',
      before: [esphomeTemp, ['homeassistant/sensor/livingroom/temperature/config', '{"stat_t":']],
      message: ['livingroom/sensor/temperature/state', '21.5'],
      readings: [r('24dcc3a1b2c4', 'Temperature', 21.5, '°C')],
      facts: [{ device: '24dcc3a1b2c4', format: 'homeassistant', name: 'livingroom' }],
    },
    {
      name: "HA's own topics under the prefix are ignored",
      message: ['homeassistant/status', 'online'],
      readings: [],
      facts: [],
    },
  ])

  it('forgets the oldest discovery entries beyond the cap', () => {
    const parser = createReadingsParser({ maxRememberedEntries: 2 })
    for (const n of [1, 2, 3]) parser.parse(`homeassistant/sensor/s${n}/config`, `{"name":"S${n}","stat_t":"x/s${n}"}`, T)
    // s1 was evicted: its state topic falls back to topic naming.
    expect(parser.parse('x/s1', '1', T).readings).toEqual([r('x', 's1', 1)])
    expect(parser.parse('x/s3', '3', T).readings).toEqual([r('s3', 'S3', 3)])
  })

  it('stays bounded under a flood of distinct configs', () => {
    const parser = createReadingsParser({ maxRememberedEntries: 100 })
    for (let i = 0; i < 5000; i++) parser.parse(`homeassistant/sensor/n${i}/config`, `{"stat_t":"flood/${i}"}`, T)
    expect(parser.parse('flood/4999', '1', T).readings).toEqual([r('n4999', 'n4999', 1)])
    expect(parser.parse('flood/0', '1', T).readings).toEqual([r('flood', '0', 1)])
  })
})

describe('fallback: topic names the device and metric', () => {
  table([
    {
      name: 'numeric payload: device = topic without last level',
      message: ['home/kitchen/temperature', '21.5'],
      readings: [r('home/kitchen', 'temperature', 21.5)],
      facts: [{ device: 'home/kitchen', format: 'topic', commandBase: 'home/kitchen' }],
    },
    {
      name: 'one-level topic: device = topic, metric value',
      message: ['weather', '12'],
      readings: [r('weather', 'value', 12)],
      facts: [{ device: 'weather', format: 'topic', commandBase: 'weather' }],
    },
    ...(
      [
        ['ON', 1],
        ['off', 0],
        ['True', 1],
        ['FALSE', 0],
      ] as const
    ).map(
      ([payload, value]): Case => ({
        name: `${payload} is binary ${value}`,
        message: ['home/hall/light', payload],
        readings: [r('home/hall', 'light', value)],
        facts: [{ device: 'home/hall', format: 'topic', commandBase: 'home/hall', binary: ['light'] }],
      }),
    ),
    ...['hello', '21.5 °C', '0x10', 'NaN', 'Infinity', '-Infinity', '1e999', '-1e999', '', '  ', '1,5', '--1'].map(
      (payload): Case => ({
        name: `non-numeric ${JSON.stringify(payload)} gives nothing`,
        message: ['home/kitchen/temperature', payload],
        readings: [],
        facts: [],
      }),
    ),
    {
      name: 'whitespace around a number is fine; exponents too',
      message: ['lab/x', ' 1.5e3\n'],
      readings: [r('lab', 'x', 1500)],
      facts: [{ device: 'lab', format: 'topic', commandBase: 'lab' }],
    },
    {
      name: 'huge but finite number is kept',
      message: ['lab/big', '123456789012345678901234567890'],
      readings: [r('lab', 'big', 1.2345678901234568e29)],
      facts: [{ device: 'lab', format: 'topic', commandBase: 'lab' }],
    },
    {
      name: 'JSON object: the whole topic is the device, keys are metrics (Zigbee2MQTT)',
      message: ['zigbee2mqtt/kitchen_sensor', '{"temperature":21.3,"humidity":45,"battery":97,"state":"ON","update":{"state":"idle"}}'],
      readings: [
        r('zigbee2mqtt/kitchen_sensor', 'temperature', 21.3),
        r('zigbee2mqtt/kitchen_sensor', 'humidity', 45),
        r('zigbee2mqtt/kitchen_sensor', 'battery', 97),
        r('zigbee2mqtt/kitchen_sensor', 'state', 1),
      ],
      facts: [
        {
          device: 'zigbee2mqtt/kitchen_sensor',
          format: 'topic',
          commandBase: 'zigbee2mqtt/kitchen_sensor',
          binary: ['state'],
        },
      ],
    },
    {
      name: 'status online is a fact',
      message: ['sensors/room1/status', 'online'],
      readings: [],
      facts: [{ device: 'sensors/room1', format: 'topic', online: true, commandBase: 'sensors/room1' }],
    },
    {
      name: '$SYS topics are skipped entirely',
      message: ['$SYS/broker/load/messages/received/1min', '12.5'],
      readings: [],
      facts: [],
    },
    {
      name: 'our own command topic <device>/<metric>/set is not a reading',
      message: ['home/hall/light/set', 'ON'],
      readings: [],
      facts: [],
    },
    {
      name: 'topic ending in / has no metric',
      message: ['home/kitchen/', '1'],
      readings: [],
      facts: [],
    },
  ])
})

describe('malformed input never throws', () => {
  const deepObject = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)
  const deepArray = '['.repeat(10_000) + '1' + ']'.repeat(10_000)
  // 1 MB (decimal): under the default 1 MiB payload cap, so it is really parsed.
  const megabyte = 'x'.repeat(1_000_000)
  const garbage = Array.from({ length: 4096 }, (_, i) => String.fromCharCode((i * 7919) % 65536)).join('')
  const payloads: Array<[string, string]> = [
    ['truncated JSON', '{"temp": 21.'],
    ['truncated JSON string', '{"Time":"2024-01-01T12:00:00","AM2301":{"Temper'],
    ['NaN', 'NaN'],
    ['1e999', '1e999'],
    ['JSON with 1e999', '{"a":1e999,"b":-1e999,"ts":1e999,"Time":1e999}'],
    ['huge number literal', '9'.repeat(400)],
    ['10000-deep object', deepObject],
    ['10000-deep array', deepArray],
    ['1 MB string value', `{"s":"${megabyte}","n":1}`],
    ['1 MB key', `{"${megabyte}":1}`],
    ['1 MB raw payload', megabyte],
    ['over the payload cap', `{"n":1,"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`],
    ['__proto__ keys', '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":2}},"ok":3}'],
    ['binary garbage', garbage],
    ['NUL bytes', '\u0000\u0000\u0000'],
    ['JSON null', 'null'],
    ['JSON array', '[1,2,3]'],
    ['JSON string', '"21.5"'],
    ['empty', ''],
    ['lone surrogate', '\ud800'],
  ]
  const topics = [
    'devices/d1/telemetry',
    'tele/t1/SENSOR',
    'tele/t1/STATE',
    'stat/t1/RESULT',
    'stat/t1/STATUS10',
    'tele/t1/LWT',
    'n1/sensor/temp/state',
    'n1/light/lamp/state',
    'homie/dev/node/prop',
    'homie/5/dev/$description',
    'homie/dev/node/prop/$unit',
    'homeassistant/sensor/x/config',
    'homeassistant/device/x/config',
    'some/other/topic',
    'one',
  ]

  it.each(payloads)('%s on every format', (_name, payload) => {
    const parser = createReadingsParser()
    for (const topic of topics) {
      const result = parser.parse(topic, payload, T)
      for (const reading of result.readings) {
        expect(Number.isFinite(reading.value)).toBe(true)
        expect(reading.metric).not.toMatch(/__proto__|constructor|prototype/)
        expect(reading.metric.length).toBeLessThanOrEqual(256)
      }
    }
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
  })

  it('a discovery config made of garbage maps nothing and breaks nothing', () => {
    const parser = createReadingsParser()
    for (const [, payload] of payloads) parser.parse('homeassistant/sensor/x/config', payload, T)
    expect(parser.parse('some/other/topic', '5', T).readings).toEqual([r('some/other', 'topic', 5)])
  })

  it('exact outcomes for hostile payloads', () => {
    const p = createReadingsParser()
    expect(p.parse('devices/d1/telemetry', '{"temp": 21.', T)).toEqual({ readings: [], facts: [] })
    expect(p.parse('devices/d1/telemetry', '{"a":1e999,"b":2}', T).readings).toEqual([r('d1', 'b', 2)])
    expect(p.parse('devices/d1/telemetry', deepObject, T)).toEqual({ readings: [], facts: [] })
    expect(p.parse('devices/d1/telemetry', `{"s":"${megabyte}","n":1}`, T).readings).toEqual([r('d1', 'n', 1)])
    expect(p.parse('devices/d1/telemetry', `{"n":1,"pad":"${megabyte}${megabyte}"}`, T).readings).toEqual([])
    expect(
      p.parse('devices/d1/telemetry', '{"__proto__":{"x":1},"constructor":{"prototype":{"y":2}},"ok":3}', T).readings,
    ).toEqual([r('d1', 'ok', 3)])
    expect(p.parse('devices/__proto__/telemetry', '{"x":1}', T)).toEqual({ readings: [], facts: [] })
    expect(p.parse('homeassistant/sensor/__proto__/config', '{"stat_t":"pp/x"}', T)).toEqual({ readings: [], facts: [] })
  })

  it('caps the readings taken from one message', () => {
    const big = JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`m${i}`, i])))
    const result = createReadingsParser().parse('devices/d1/telemetry', big, T)
    expect(result.readings).toHaveLength(512)
    expect(result.readings[511]).toEqual(r('d1', 'm511', 511))
  })

  it.each([
    ['empty topic', ''],
    ['wildcard topic', 'a/+/b'],
    ['NUL in topic', 'a\u0000b'],
    ['topic longer than MQTT allows', 'x'.repeat(70_000)],
    ['only slashes', '///'],
  ])('%s gives nothing', (_name, topic) => {
    expect(createReadingsParser().parse(topic, '1', T)).toEqual({ readings: [], facts: [] })
  })

  it('non-string arguments from untyped callers give nothing', () => {
    const parse = createReadingsParser().parse as (topic: unknown, payload: unknown, ts: unknown) => ParseResult
    expect(parse(undefined, '1', T)).toEqual({ readings: [], facts: [] })
    expect(parse('a/b', 1, T)).toEqual({ readings: [], facts: [] })
    expect(parse('a/b', { toString: () => '1' }, T)).toEqual({ readings: [], facts: [] })
  })

  it('a non-finite receive time is replaced by the clock', () => {
    const [reading] = createReadingsParser().parse('a/b', '1', Number.NaN).readings
    expect(Number.isFinite(reading?.ts)).toBe(true)
  })

  it('rejects bad options by name', () => {
    expect(() => createReadingsParser({ maxRememberedEntries: 0 })).toThrow(/maxRememberedEntries/)
    expect(() => createReadingsParser({ discoveryPrefix: 'a/b' })).toThrow(/discoveryPrefix/)
  })
})
