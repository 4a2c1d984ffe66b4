/** Pages, addressed by the location hash so the server needs no routes: `#/devices/<id>`. */
export type Route =
  | { page: 'overview' }
  | { page: 'device'; id: string }
  | { page: 'messages' }
  | { page: 'topics' }
  | { page: 'broker' }
  | { page: 'missing'; path: string }

function parse(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/'
  if (path === '/' || path === '/devices') return { page: 'overview' }
  if (path === '/messages') return { page: 'messages' }
  if (path === '/topics') return { page: 'topics' }
  if (path === '/broker') return { page: 'broker' }
  const device = /^\/devices\/(.+)$/.exec(path)
  if (device) {
    try {
      return { page: 'device', id: decodeURIComponent(device[1]!) }
    } catch {
      // a malformed %-escape: fall through to "missing"
    }
  }
  return { page: 'missing', path }
}

class Router {
  route = $state<Route>(parse(location.hash))

  constructor() {
    window.addEventListener('hashchange', () => {
      this.route = parse(location.hash)
    })
  }
}

export const router = new Router()

export const links = {
  overview: '#/',
  device: (id: string) => `#/devices/${encodeURIComponent(id)}`,
  messages: '#/messages',
  topics: '#/topics',
  broker: '#/broker',
}
