export type {
  CommandResult,
  CommandTarget,
  DeviceFact,
  DeviceFormat,
  ParseResult,
  Reading,
  ReadingsParser,
  ReadingsParserOptions,
} from './types.ts'
export { ReadingsParserOptionsSchema } from './types.ts'
export { createReadingsParser } from './parser.ts'
export { commandFor } from './commands.ts'
