export type {
  CommandResult,
  CommandTarget,
  DeviceFact,
  FormatsState,
  ParseResult,
  ReadingsParser,
  ReadingsParserOptions,
} from './types.ts'
export { ReadingsParserOptionsSchema } from './types.ts'
export { createReadingsParser } from './parser.ts'
export { commandFor } from './commands.ts'
