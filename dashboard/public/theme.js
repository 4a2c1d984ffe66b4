// Before the first paint, so a remembered theme never flashes the other one.
let t = null
try {
  t = localStorage.getItem('pulseboard.theme')
} catch {
  // storage is blocked: follow the OS
}
if (t !== 'light' && t !== 'dark') t = matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'
document.documentElement.dataset.theme = t
