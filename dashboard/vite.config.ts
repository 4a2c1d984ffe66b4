import { defineConfig } from 'vite'
import { svelte } from '@sveltejs/vite-plugin-svelte'

/** The dashboard folder, whatever the working directory (`vite --config dashboard/vite.config.ts`). */
const root = decodeURIComponent(new URL('.', import.meta.url).pathname)

/** Where `npm run dev` finds the running server (`pulseboard start`). */
const server = 'http://localhost:5000'

export default defineConfig({
  root,
  plugins: [svelte()],
  build: {
    // beside the compiled server, where it finds it in the repository and in the package alike
    outDir: '../dist/dashboard',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      '/api': { target: server },
      '/socket.io': { target: server, ws: true },
      '/mqtt': { target: server, ws: true },
    },
  },
})
