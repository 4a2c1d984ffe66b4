import { describe, expect, it } from 'vitest'
import { commandFor, createReadingsParser, type CommandTarget, type DeviceFact } from '../../formats/index.ts'

const generic: CommandTarget = { id: 'd1', format: 'generic', commandBase: 'devices/d1' }
const tasmota: CommandTarget = { id: 'tasmota_28AF0B', format: 'tasmota', commandBase: 'tasmota_28AF0B', binary: ['POWER'] }
const esphome: CommandTarget = {
  id: 'livingroom',
  format: 'esphome',
  commandBase: 'livingroom',
  commands: {
    relay: 'livingroom/switch/relay/command',
    setpoint: 'livingroom/number/setpoint/command',
    lamp: 'livingroom/light/lamp/command',
    'living.target_temperature': 'livingroom/climate/living/target_temperature/command',
  },
  binary: ['relay', 'lamp'],
}
const homie: CommandTarget = {
  id: 'super-car',
  format: 'homie',
  commandBase: 'homie/super-car',
  commands: {
    'engine.power': 'homie/super-car/engine/power/set',
    'light.brightness': 'homie/super-car/light/brightness/set',
  },
  binary: ['engine.power'],
}
const homeassistant: CommandTarget = {
  id: '24dcc3a1b2c4',
  format: 'homeassistant',
  commands: { Relay: 'livingroom/switch/relay/command', Target: 'thermo/target/set' },
  binary: ['Relay'],
}
const fallback: CommandTarget = { id: 'home/hall', format: 'topic', commandBase: 'home/hall', binary: ['light'] }

describe('commandFor', () => {
  it.each<[string, CommandTarget, string, unknown, string, string]>([
    ['generic number', generic, 'relay', 1, 'devices/d1/commands', '{"name":"relay","value":1}'],
    ['generic boolean', generic, 'relay', true, 'devices/d1/commands', '{"name":"relay","value":true}'],
    ['generic object', generic, 'led', { r: 255, g: 0 }, 'devices/d1/commands', '{"name":"led","value":{"r":255,"g":0}}'],
    ['generic null', generic, 'reset', null, 'devices/d1/commands', '{"name":"reset","value":null}'],
    ['generic without commandBase', { id: 'd2', format: 'generic' }, 'x', 'a', 'devices/d2/commands', '{"name":"x","value":"a"}'],
    ['tasmota POWER true', tasmota, 'POWER', true, 'cmnd/tasmota_28AF0B/POWER', 'ON'],
    ['tasmota POWER 1', tasmota, 'POWER', 1, 'cmnd/tasmota_28AF0B/POWER', 'ON'],
    ['tasmota POWER "on"', tasmota, 'POWER', 'on', 'cmnd/tasmota_28AF0B/POWER', 'ON'],
    ['tasmota POWER2 0', tasmota, 'POWER2', 0, 'cmnd/tasmota_28AF0B/POWER2', 'OFF'],
    ['tasmota POWER toggle', tasmota, 'POWER', 'toggle', 'cmnd/tasmota_28AF0B/POWER', 'TOGGLE'],
    ['tasmota Dimmer number as text', tasmota, 'Dimmer', 50, 'cmnd/tasmota_28AF0B/Dimmer', '50'],
    ['tasmota null queries state', tasmota, 'POWER', null, 'cmnd/tasmota_28AF0B/POWER', ''],
    ['esphome switch true', esphome, 'relay', true, 'livingroom/switch/relay/command', 'ON'],
    ['esphome switch 0', esphome, 'relay', 0, 'livingroom/switch/relay/command', 'OFF'],
    ['esphome number', esphome, 'setpoint', 21.5, 'livingroom/number/setpoint/command', '21.5'],
    ['esphome light JSON', esphome, 'lamp', 1, 'livingroom/light/lamp/command', '{"state":"ON"}'],
    [
      'esphome climate sub-state',
      esphome,
      'living.target_temperature',
      22,
      'livingroom/climate/living/target_temperature/command',
      '22',
    ],
    ['homie boolean', homie, 'engine.power', true, 'homie/super-car/engine/power/set', 'true'],
    ['homie binary 0', homie, 'engine.power', 0, 'homie/super-car/engine/power/set', 'false'],
    ['homie binary "ON"', homie, 'engine.power', 'ON', 'homie/super-car/engine/power/set', 'true'],
    ['homie integer', homie, 'light.brightness', 80, 'homie/super-car/light/brightness/set', '80'],
    ['homeassistant switch', homeassistant, 'Relay', false, 'livingroom/switch/relay/command', 'OFF'],
    ['homeassistant binary 1', homeassistant, 'Relay', 1, 'livingroom/switch/relay/command', 'ON'],
    ['homeassistant number', homeassistant, 'Target', 21, 'thermo/target/set', '21'],
    ['topic binary', fallback, 'light', 1, 'home/hall/light/set', 'ON'],
    ['topic number', fallback, 'dimmer', 40, 'home/hall/dimmer/set', '40'],
    ['topic string', fallback, 'mode', 'auto', 'home/hall/mode/set', 'auto'],
    ['topic without commandBase', { id: 'lab', format: 'topic' }, 'fan', true, 'lab/fan/set', 'ON'],
  ])('%s', (_name, target, name, value, topic, payload) => {
    expect(commandFor(target, name, value)).toEqual({ topic, payload })
  })

  it.each<[string, CommandTarget, string]>([
    ['homie property that is not settable', homie, 'engine.temperature'],
    ['homie without announcements', { id: 'x', format: 'homie', commandBase: 'homie/x' }, 'a.b'],
    ['HA entity without command_topic', homeassistant, 'Temperature'],
    ['esphome sensor (no command topic)', esphome, 'temperature'],
    ['prototype key is not an announced command', homeassistant, '__proto__'],
    ['inherited key is not an announced command', homeassistant, 'toString'],
    ['empty name', generic, ''],
    ['tasmota name with a slash', tasmota, 'a/b'],
    ['tasmota name with a wildcard', tasmota, 'POWER#'],
    ['topic name with a wildcard', fallback, '+'],
    ['unknown format', { id: 'x', format: 'zigbee' as CommandTarget['format'] }, 'x'],
  ])('%s is E_UNKNOWN_COMMAND', (_name, target, name) => {
    const result = commandFor(target, name, 1)
    expect(result).toMatchObject({ error: 'E_UNKNOWN_COMMAND' })
    expect('message' in result && result.message.length > 0).toBe(true)
  })

  it.each<[string, unknown]>([
    ['undefined', undefined],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['bigint', 10n],
    ['function', () => 1],
    ['symbol', Symbol('x')],
  ])('a %s value is E_INVALID_MESSAGE', (_name, value) => {
    for (const target of [generic, tasmota, fallback, homie]) {
      const name = target === homie ? 'light.brightness' : 'x'
      expect(commandFor(target, name, value)).toMatchObject({ error: 'E_INVALID_MESSAGE' })
    }
  })

  it('a cyclic object is E_INVALID_MESSAGE', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic['self'] = cyclic
    expect(commandFor(generic, 'x', cyclic)).toMatchObject({ error: 'E_INVALID_MESSAGE' })
    expect(commandFor(fallback, 'x', cyclic)).toMatchObject({ error: 'E_INVALID_MESSAGE' })
  })
})

describe('facts from the parser are enough to build commands', () => {
  /** Merge facts the way a registry would: later fields win, maps and lists accumulate. */
  function accumulate(facts: DeviceFact[], id: string): CommandTarget {
    const target: CommandTarget = { id, format: 'topic' }
    for (const f of facts.filter((x) => x.device === id)) {
      target.format = f.format
      if (f.commandBase !== undefined) target.commandBase = f.commandBase
      if (f.commands) target.commands = { ...target.commands, ...f.commands }
      if (f.binary) target.binary = [...new Set([...(target.binary ?? []), ...f.binary])]
    }
    return target
  }

  it.each<[string, Array<[string, string]>, string, string, unknown, { topic: string; payload: string }]>([
    ['generic', [['devices/d9/telemetry', '{"relay":false}']], 'd9', 'relay', true, { topic: 'devices/d9/commands', payload: '{"name":"relay","value":true}' }],
    ['tasmota', [['stat/plug/POWER', 'OFF']], 'plug', 'POWER', 1, { topic: 'cmnd/plug/POWER', payload: 'ON' }],
    ['esphome', [['node/switch/pump/state', 'OFF']], 'node', 'pump', true, { topic: 'node/switch/pump/command', payload: 'ON' }],
    [
      'homie',
      [
        ['homie/5/lamp/$description', '{"homie":"5.0","name":"Lamp","version":1,"nodes":{"l":{"properties":{"on":{"datatype":"boolean","settable":true}}}}}'],
      ],
      'lamp',
      'l.on',
      1,
      { topic: 'homie/5/lamp/l/on/set', payload: 'true' },
    ],
    [
      'homeassistant',
      [['homeassistant/switch/n1/fan/config', '{"name":"Fan","stat_t":"n1/fan","cmd_t":"n1/fan/set","dev":{"ids":["n1-dev"]}}']],
      'n1-dev',
      'Fan',
      false,
      { topic: 'n1/fan/set', payload: 'OFF' },
    ],
    ['topic', [['garden/pump', 'off']], 'garden', 'pump', true, { topic: 'garden/pump/set', payload: 'ON' }],
  ])('%s', (_name, messages, id, name, value, expected) => {
    const parser = createReadingsParser()
    const facts = messages.flatMap(([t, p]) => parser.parse(t, p, 0).facts)
    expect(commandFor(accumulate(facts, id), name, value)).toEqual(expected)
  })

  it("a command published by commandFor is not read back as a reading", () => {
    const parser = createReadingsParser()
    const sent = [
      commandFor(generic, 'relay', 1),
      commandFor(tasmota, 'POWER', 1),
      commandFor(esphome, 'relay', 1),
      commandFor(homie, 'engine.power', 1),
      commandFor(fallback, 'light', 1),
    ]
    for (const s of sent) {
      if (!('topic' in s)) throw new Error(`expected a command, got ${s.message}`)
      expect(parser.parse(s.topic, s.payload, 0)).toEqual({ readings: [], facts: [] })
    }
  })
})
