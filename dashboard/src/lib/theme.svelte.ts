export type ThemeName = 'light' | 'dark'

const KEY = 'pulseboard.theme'
const media = window.matchMedia('(prefers-color-scheme: dark)')

function remembered(): ThemeName | null {
  try {
    const value = localStorage.getItem(KEY)
    return value === 'light' || value === 'dark' ? value : null
  } catch {
    return null
  }
}

/** Follows the OS until the user picks a theme; the pick is remembered. */
class Theme {
  /** The user's pick, or null to follow the OS. */
  choice = $state<ThemeName | null>(remembered())
  system = $state<ThemeName>(media.matches ? 'dark' : 'light')
  readonly current: ThemeName = $derived(this.choice ?? this.system)

  constructor() {
    media.addEventListener('change', (e) => (this.system = e.matches ? 'dark' : 'light'))
  }

  toggle(): void {
    this.choice = this.current === 'dark' ? 'light' : 'dark'
    try {
      // picking what the OS already shows means "follow the OS" again
      if (this.choice === this.system) localStorage.removeItem(KEY)
      else localStorage.setItem(KEY, this.choice)
    } catch {
      // private mode: the pick lasts for this page only
    }
  }

  /** Puts the theme on <html>, where the CSS custom properties switch. */
  apply(): void {
    document.documentElement.dataset.theme = this.current
  }
}

export const theme = new Theme()

/** A CSS custom property of the current theme, for canvas drawing (Chart.js cannot read CSS). */
export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim()
}
