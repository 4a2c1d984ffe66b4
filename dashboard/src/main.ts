import { mount } from 'svelte'
import App from './App.svelte'
import { connectLive } from './lib/live.svelte.ts'
import './app.css'

connectLive()
mount(App, { target: document.getElementById('app')! })
