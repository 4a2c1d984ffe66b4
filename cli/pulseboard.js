#!/usr/bin/env node
// The one executable: loads TypeScript through tsx, so the sources run as they are.
import { register } from 'tsx/esm/api'

register()
await import('./main.ts')
