import { mount } from 'svelte'
import App from './App.svelte'
import { connectLive } from './lib/live.svelte.ts'
import { checkSession, loggedIn } from './lib/session.svelte.ts'
import './app.css'

// a server with users answers nothing without a session: ask first, and connect once logged in
await checkSession()
if (loggedIn()) connectLive()
mount(App, { target: document.getElementById('app')! })
