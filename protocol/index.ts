export * from './errors.ts'
export * from './topics.ts'
export * from './envelope.ts'
export * from './events.ts'
