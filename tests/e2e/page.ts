import type { Browser, BrowserContext, Page } from 'playwright-core'

/** Viewport and colour scheme of a page under test. */
export interface View {
  width?: number
  height?: number
  colorScheme?: 'light' | 'dark'
}

/** What went wrong in the pages of one test: uncaught errors and Content-Security-Policy refusals both must stay empty. */
export interface PageTrouble {
  errors: string[]
  csp: string[]
}

/**
 * A fresh browser context (its own storage) with one page on the dashboard at `hash`, once the
 * header says it is live. Errors and CSP violations of every page of the context land in `trouble`.
 */
export async function openDashboard(browser: Browser, httpUrl: string, hash: string, view: View, trouble: PageTrouble): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({
    viewport: { width: view.width ?? 1280, height: view.height ?? 800 },
    colorScheme: view.colorScheme ?? 'light',
    locale: 'en-US',
    acceptDownloads: true,
  })
  await context.exposeFunction('reportCspViolation', (what: string) => trouble.csp.push(what))
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      const report = (window as unknown as { reportCspViolation: (what: string) => void }).reportCspViolation
      report(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`)
    })
  })
  context.on('page', (page) => page.on('pageerror', (err) => trouble.errors.push(err.message)))
  const page = await context.newPage()
  await goto(page, `${httpUrl}/${hash}`)
  return { context, page }
}

/** Navigates (or reloads, for the same URL) and waits until the socket is connected. */
export async function goto(page: Page, url: string): Promise<void> {
  await page.goto(url)
  await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 })
}

/** The chart's own account of itself, written at each redraw (see TimeChart.svelte). */
export interface ChartState {
  /** Points per line. */
  counts: Record<string, number>
  /** The last (up to 50) values of each line. */
  points: Record<string, number[]>
  /** Lowest and highest value of each line's band (bucketed lines only). */
  bands: Record<string, [number, number]>
  /** The x axis: [min, max], epoch ms. */
  x: [number, number]
}

export async function chartState(page: Page): Promise<ChartState> {
  const canvas = page.locator('canvas[data-testid=time-chart]').first()
  const read = async (name: string) => JSON.parse((await canvas.getAttribute(`data-${name}`)) ?? '{}') as unknown
  return {
    counts: (await read('counts')) as ChartState['counts'],
    points: (await read('points')) as ChartState['points'],
    bands: (await read('bands')) as ChartState['bands'],
    x: (await read('x')) as ChartState['x'],
  }
}

/** Waits until the first chart holds at least `n` points of `metric`. */
export async function waitForPoints(page: Page, metric: string, n: number, timeout = 10_000): Promise<void> {
  await page
    .waitForFunction(
      ([m, count]) => {
        const canvas = document.querySelector<HTMLCanvasElement>('canvas[data-testid=time-chart]')
        const counts = JSON.parse(canvas?.dataset['counts'] ?? '{}') as Record<string, number>
        return (counts[m as string] ?? 0) >= (count as number)
      },
      [metric, n] as const,
      { timeout },
    )
    .catch((err: Error) => {
      throw new Error(`expected the chart to hold ${n} points of "${metric}": ${err.message}`)
    })
}

/** Waits until the last values of `metric` on the chart are exactly `values`. */
export async function waitForValues(page: Page, metric: string, values: number[], timeout = 10_000): Promise<void> {
  await page
    .waitForFunction(
      ([m, expected]) => {
        const canvas = document.querySelector<HTMLCanvasElement>('canvas[data-testid=time-chart]')
        const points = JSON.parse(canvas?.dataset['points'] ?? '{}') as Record<string, number[]>
        return JSON.stringify(points[m as string] ?? []) === JSON.stringify(expected)
      },
      [metric, values] as const,
      { timeout },
    )
    .catch(async (err: Error) => {
      const shown = (await chartState(page)).points[metric]
      throw new Error(`expected the chart's "${metric}" to be ${JSON.stringify(values)}, it is ${JSON.stringify(shown)}: ${err.message}`)
    })
}

/**
 * Waits until the device page's history has nothing on its way: loaded, asked again once the
 * socket settled, and any gap after a reconnect filled (`data-settled` on the chart).
 */
export async function waitForSettled(page: Page, timeout = 10_000): Promise<void> {
  await page.locator('[data-testid=chart-box][data-settled=true]').waitFor({ timeout }).catch((err: Error) => {
    throw new Error(`expected the device page's history to settle: ${err.message}`)
  })
}
