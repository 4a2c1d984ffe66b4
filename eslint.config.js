import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import svelte from 'eslint-plugin-svelte'
import globals from 'globals'

/**
 * The import rules that keep the folders telling the flow (docs/architecture.md):
 * device → broker → bridge → devices/store → dashboard. Each entry: the files, and
 * the imports they may not make, as regular expressions over the import path.
 */
const OUR_FOLDERS = 'protocol|formats|auth|broker|bridge|devices|store|cluster|server|bench|cli|dashboard|simulators|tests|examples'
const boundaries = [
  { files: ['protocol/**'], forbid: ['^node:', '^\\.\\./'], why: 'protocol/ is the wire contract: it imports nothing of ours and no node: module' },
  { files: ['formats/**'], forbid: ['^node:', '^\\.\\./(?!protocol/)'], why: 'formats/ are pure decoders: they import only protocol/' },
  { files: ['auth/**'], forbid: ['^\\.\\./(?!protocol/)'], why: 'auth/ decides who may do what from the config alone: it imports only protocol/' },
  {
    files: ['broker/**'],
    forbid: ['^socket\\.io', '^\\.\\./(auth|bridge|devices|store|server|cli|bench|dashboard)/'],
    why: 'broker/ knows nothing of socket.io or the bridge',
  },
  { files: ['bridge/**', 'devices/**', 'store/**'], forbid: ['^\\.\\./(server|cli|bench|cluster)/'], why: 'bridge/, devices/ and store/ never import server/, cli/ or cluster/' },
  { files: ['cluster/**'], forbid: ['^\\.\\./(server|cli|bench|dashboard)/'], why: 'cluster/ shares state through Redis for the composition root; it never imports server/ or cli/' },
  {
    files: ['dashboard/**'],
    forbid: [`^(\\.\\./)+(?!protocol/)(${OUR_FOLDERS})/`],
    why: 'the dashboard imports only protocol/ of the server side',
  },
  {
    files: ['simulators/**'],
    forbid: ['^socket\\.io', '^\\.\\./(broker|bridge|devices|store|server|cli|bench|formats)/'],
    why: 'simulators are plain MQTT clients',
  },
]

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'build/', 'tests/screenshots/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...svelte.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // library code reports through events and the injected logger
      'no-console': 'off',
    },
  },
  {
    files: ['protocol/**', 'broker/**', 'bridge/**', 'cluster/**', 'simulators/**'],
    rules: { 'no-console': 'error' },
  },
  {
    files: ['dashboard/**'],
    languageOptions: { globals: { ...globals.browser } },
  },
  ...boundaries.map(({ files, forbid, why }) => ({
    files,
    rules: { 'no-restricted-imports': ['error', { patterns: forbid.map((regex) => ({ regex, message: why })) }] },
  })),
  {
    files: ['**/*.svelte', '**/*.svelte.ts'],
    languageOptions: { parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.svelte'] } },
  },
)
