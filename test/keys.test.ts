/**
 * Change keys (src/core/keys.ts): the request-target reduced to its path, the router's canonical
 * path filled from the matched template, the path a `Content-Location`/`Location` header names, and
 * the nearest keyable ancestor of a path. Tables for the rules, fast-check for the invariants.
 */
import fc from 'fast-check'
import { fillRoute, headerPath, nearestKeyable, requestTargetPath } from '../src/core/keys'
import { checkPath, withAncestors } from '../src/core/paths'

const RUNS = Number(process.env.FC_RUNS ?? 300)

describe('requestTargetPath', () => {
  it.each([
    // origin-form, as is
    ['/things/42', '/things/42'],
    ['/things/42?x=1', '/things/42?x=1'],
    ['/a/../b', '/a/../b'],
    ['/a%2Fb/%2e%2e', '/a%2Fb/%2e%2e'],
    ['/', '/'],
    // absolute-form: scheme and authority dropped, nothing else touched
    ['http://127.0.0.1:3000/things/42', '/things/42'],
    ['https://example.com/things/42?x=1', '/things/42?x=1'],
    ['HTTP://EXAMPLE.COM/THINGS/42', '/THINGS/42'],
    ['http://host/a/../b/%34%32', '/a/../b/%34%32'],
    ['http://user@host:1/a', '/a'],
    ['http://[::1]:8080/a', '/a'],
    ['http://host', '/'],
    ['http://host?x=1', '/?x=1'],
    ['http://host#frag', '/#frag'],
    ['http://host//a', '//a'],
    // authority-form, asterisk-form, empty, junk
    ['example.com:443', '/'],
    ['*', '/'],
    ['', '/'],
    ['things/42', '/'],
    ['http:/things', '/'],
  ])('%j → %j', (target, expected) => {
    expect(requestTargetPath(target)).toBe(expected)
  })

  it('leaves origin-form untouched and always returns a path', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const path = requestTargetPath(s)
        expect(path.startsWith('/')).toBe(true)
        if (s.startsWith('/')) expect(path).toBe(s)
      }),
      { numRuns: RUNS },
    )
  })

  it('reduces any absolute-form target to the origin-form it carries', () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9%:@!$&'()*+,;=._~-]*$/)
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1 }), fc.domain(), (segments, host) => {
        const path = `/${segments.join('/')}`
        expect(requestTargetPath(`http://${host}${path}`)).toBe(path)
      }),
      { numRuns: RUNS },
    )
  })
})

describe('fillRoute', () => {
  it.each<[string, string, Record<string, unknown>, string | undefined]>([
    // Shared syntax
    ['a plain param', '/things/:id', { id: '42' }, '/things/42'],
    ['no params', '/things', {}, '/things'],
    ['several segments', '/users/:user/items/:id', { user: 'ann', id: '7' }, '/users/ann/items/7'],
    ['a decoded value re-encoded', '/things/:id', { id: '42\t' }, '/things/42%09'],
    ['an encoded slash kept in its segment', '/things/:id', { id: 'a/b' }, '/things/a%2Fb'],
    ['space, percent and non-ASCII', '/things/:id', { id: 'é 100%' }, '/things/%C3%A9%20100%25'],
    ['segment-legal characters kept', '/things/:id', { id: ":@!$&'()*+,;=" }, "/things/:@!$&'()*+,;="],
    ['?, # and \\ encoded', '/things/:id', { id: '?#\\' }, '/things/%3F%23%5C'],
    ['an empty value', '/things/:id', { id: '' }, '/things/'],
    ['a missing param', '/things/:id', {}, undefined],
    ['an undefined param', '/things/:id', { id: undefined }, undefined],
    ['a non-string param', '/things/:id', { id: 42 }, undefined],
    ['a lone surrogate', '/things/:id', { id: '\ud800' }, undefined],
    ['an inherited name is not a param', '/things/:constructor', {}, undefined],
    ['non-ASCII template text encoded', '/café/:id', { id: '1' }, '/caf%C3%A9/1'],
    ['percent-encoded template text kept', '/a%20b/:id', { id: '1' }, '/a%20b/1'],
    // Fastify (find-my-way)
    ['Fastify regex suffix', '/items/:id(^\\d+)', { id: '12' }, '/items/12'],
    ['Fastify regex with parens and a class', '/items/:id(^(a|b)[)(]+$)', { id: 'a)' }, '/items/a)'],
    ['Fastify two params and regexes', '/:a(\\d+)-:b(\\d+)', { a: '1', b: '2' }, '/1-2'],
    ['Fastify params joined by -', '/multi/:a-:b', { a: 'x', b: 'y' }, '/multi/x-y'],
    ['Fastify params joined by .', '/dot/:a.:b', { a: 'x', b: 'y' }, '/dot/x.y'],
    ['Fastify wildcard', '/wild/*', { '*': 'a/b c' }, '/wild/a/b%20c'],
    ['Fastify empty wildcard', '/wild/*', { '*': '' }, '/wild/'],
    ['Fastify wildcard missing', '/wild/*', {}, undefined],
    ['Fastify literal colon', '/colon/a::b/:id', { id: '5' }, '/colon/a:b/5'],
    ['Fastify param name past ID characters', '/p/:a@b', { 'a@b': 'v' }, '/p/v'],
    ['Fastify optional param present', '/f/:file?', { file: 'x' }, '/f/x'],
    ['Fastify optional param empty', '/f/:file?', { file: '' }, '/f/'],
    ['Fastify optional param absent', '/f/:file?', {}, '/f'],
    ['unbalanced regex', '/items/:id(^\\d+', { id: '1' }, undefined],
    // Express 5 / @koa/router 15 (path-to-regexp 8)
    ['quoted name', '/q/:"quoted name"', { 'quoted name': 'v' }, '/q/v'],
    ['quoted name with an escaped quote', '/q/:"a\\"b"', { 'a"b': 'v' }, '/q/v'],
    ['Express splat (array)', '/splat/*rest', { rest: ['a', 'b/c'] }, '/splat/a/b%2Fc'],
    ['Koa splat (string)', '/splat/{*rest}', { rest: 'a/b' }, '/splat/a/b'],
    ['quoted splat', '/s/*"the rest"', { 'the rest': ['x'] }, '/s/x'],
    ['empty splat array', '/splat/*rest', { rest: [] }, undefined],
    ['splat of non-strings', '/splat/*rest', { rest: [1] }, undefined],
    ['optional group present', '/opt{/:a}', { a: 'z' }, '/opt/z'],
    ['optional group absent', '/opt{/:a}', {}, '/opt'],
    ['optional group partly present', '/o{/:a/:b}/end', { a: 'x' }, '/o/end'],
    ['nested groups', '/o{/:a{/:b}}', { a: 'x' }, '/o/x'],
    ['nested groups all present', '/o{/:a{/:b}}', { a: 'x', b: 'y' }, '/o/x/y'],
    ['optional extension', '/file{.:ext}', { ext: 'json' }, '/file.json'],
    ['escaped syntax', '/e/\\:x\\*\\{\\}\\(\\)', {}, '/e/:x*%7B%7D()'],
    ['escaped mount prefix (Express adapter)', '/API/n/a\\:b/x/:id', { id: '9' }, '/API/n/a:b/x/9'],
    ['unclosed group', '/o{/:a', { a: 'x' }, undefined],
    ['stray }', '/o}', {}, undefined],
    ['stray (', '/o(', {}, undefined],
    ['stray ?', '/o?', {}, undefined],
    ['trailing backslash', '/o\\', {}, undefined],
    ['unterminated quote', '/q/:"abc', { abc: 'v' }, undefined],
    ['empty param name', '/a/:', {}, undefined],
    ['empty param name before -', '/a/:-x', {}, undefined],
  ])('%s: %j with %j → %j', (_why, template, params, expected) => {
    expect(fillRoute(template, params)).toBe(expected)
  })

  it('fills :id with any value so that its segment decodes back to the value', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (id) => {
        const path = fillRoute('/things/:id', { id }) as string
        expect(path.startsWith('/things/')).toBe(true)
        const segment = path.slice('/things/'.length)
        expect(segment).not.toMatch(/[/?#\\\s]/)
        expect(decodeURIComponent(segment)).toBe(id)
      }),
      { numRuns: RUNS },
    )
  })

  it('either refuses a value (lone surrogates) or round-trips it, for any code units', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (id) => {
        const path = fillRoute('/things/:id', { id })
        if (path !== undefined) expect(decodeURIComponent(path.slice('/things/'.length))).toBe(id)
        else expect(() => encodeURIComponent(id)).toThrow(URIError)
      }),
      { numRuns: RUNS },
    )
  })

  it('fills a wildcard so that each segment decodes back to its value', () => {
    const segment = fc.string({ unit: 'grapheme', minLength: 1 }).filter((s) => !s.includes('/'))
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 5 }), (segments) => {
        const express = fillRoute('/files/*rest', { rest: segments }) as string
        const fastify = fillRoute('/files/*', { '*': segments.join('/') }) as string
        expect(fastify).toBe(express)
        expect(express.slice('/files/'.length).split('/').map(decodeURIComponent)).toEqual(segments)
      }),
      { numRuns: RUNS },
    )
  })

  it('gives a path that checkPath accepts for well-behaved values', () => {
    const value = fc.string({ unit: 'grapheme', minLength: 1 }).filter((s) => {
      // What checkPath refuses on purpose: dot segments and control characters.
      // eslint-disable-next-line no-control-regex -- control characters are what this leaves out
      return s !== '.' && s !== '..' && !/[\u0000-\u001f\u007f/\\]/.test(s)
    })
    fc.assert(
      fc.property(value, value, (a, b) => {
        const path = fillRoute('/users/:a/items/:b', { a, b }) as string
        expect(checkPath(path, 100_000)).toBeUndefined()
      }),
      { numRuns: RUNS },
    )
  })
})

describe('headerPath', () => {
  it.each<[string, string | undefined, string, string | undefined, string | undefined]>([
    ['an absolute path', '/things/42', '/things/042', 'h', '/things/42'],
    ['a relative path', '42', '/things/042', 'h', '/things/42'],
    ['a relative path with dots', '../b', '/a/c/d', 'h', '/a/b'],
    ['dot segments resolved', '/a/./b/../c', '/', 'h', '/a/c'],
    ['query and fragment dropped', '/things/42?x=1#top', '/', 'h', '/things/42'],
    ['only a query: the request path', '?x=1', '/things/42?y', 'h', '/things/42'],
    ['an absolute-form request path', 'b', 'http://h/a/c', 'h', '/a/b'],
    ['same host', 'http://h:3000/things/42', '/', 'h:3000', '/things/42'],
    ['same host, other case', 'http://EXAMPLE.com/x', '/', 'example.COM', '/x'],
    ['same host, default port spelled out', 'http://h:80/x', '/', 'h', '/x'],
    ['same host, https default port', 'https://h/x', '/', 'h:443', '/x'],
    ['same host, IPv6', 'http://[::1]:8080/x', '/', '[::1]:8080', '/x'],
    ['another port', 'http://h:3001/x', '/', 'h:3000', undefined],
    ['another host', 'http://evil/x', '/', 'h', undefined],
    ['a network-path reference to another host', '//evil/x', '/', 'h', undefined],
    ['a network-path reference to the host', '//h/x', '/', 'h', '/x'],
    ['backslashes naming another host', '\\\\evil/x', '/', 'h', undefined],
    ['a tab hiding //', '/\t/evil/x', '/', 'h', undefined],
    ['an absolute URL without a Host to compare', 'http://h/x', '/', undefined, undefined],
    ['a relative path without a Host', '/x', '/', undefined, '/x'],
    ['the placeholder host of the resolver', 'http://a.invalid/x', '/', 'h', undefined],
    ['a Host with a path', 'http://h/x', '/', 'h/y', undefined],
    ['a Host with userinfo', 'http://h/x', '/', 'u@h', undefined],
    ['a non-http scheme', 'ftp://h/x', '/', 'h', undefined],
    ['a javascript: URL', 'javascript:alert(1)', '/', 'h', undefined],
    ['a mailto: URL', 'mailto:a@h', '/', 'h', undefined],
    ['empty', '', '/', 'h', undefined],
    ['blank', '   ', '/', 'h', undefined],
    ['absent', undefined, '/', 'h', undefined],
    ['unparsable', 'http://[::1/x', '/', 'h', undefined],
    ['spaces percent-encoded', '/a b', '/', 'h', '/a%20b'],
  ])('%s: %j against %j, host %j → %j', (_why, value, requestPath, host, expected) => {
    expect(headerPath(value, requestPath, host)).toBe(expected)
  })

  it('returns a pathname or nothing, whatever the value', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.webPath(), (value, requestPath) => {
        const path = headerPath(value, requestPath || '/', 'h')
        if (path !== undefined) {
          expect(path.startsWith('/')).toBe(true)
          expect(path).not.toMatch(/[?#]/)
        }
      }),
      { numRuns: RUNS },
    )
  })

  it('resolves a URL of the same host to its path', () => {
    fc.assert(
      fc.property(fc.webUrl({ withQueryParameters: true, withFragments: true }), (href) => {
        const url = new URL(href)
        expect(headerPath(href, '/', url.host.toUpperCase())).toBe(url.pathname)
        expect(headerPath(href, '/', `x${url.host}`)).toBeUndefined()
      }),
      { numRuns: RUNS },
    )
  })
})

describe('nearestKeyable', () => {
  it.each<[string, number, string]>([
    ['/things/42', 100, '/things/42'],
    ['/things/42?x=1', 100, '/things/42'],
    ['/things/42%09', 100, '/things'],
    ['/things/a%2Fb/c', 100, '/things'],
    ['/a/%2e%2e/b', 100, '/a'],
    ['/a//b', 100, '/a/'],
    ['/a/b\\c', 100, '/a'],
    ['/a/%zz', 100, '/a'],
    ['/things/', 100, '/things/'],
    ['/aaaa/bbbb', 10, '/aaaa/bbbb'],
    ['/aaaa/bbbb', 9, '/aaaa'],
    ['/aaaa/bbbb', 6, '/aaaa'],
    ['/aaaa/bbbb', 5, '/aaaa'],
    ['/aaaa/bbbb', 4, '/'],
    ['/aaaa/bbbb', 1, '/'],
    ['/aaaa/bbbb', 0, '/'],
    ['/a/b%00/' + 'c'.repeat(50), 20, '/a'],
    ['/', 100, '/'],
    ['', 100, '/'],
    ['things/42', 100, '/'],
    ['http://h/things/42', 100, '/'],
    ['?x=1', 100, '/'],
  ])('%j (max %j) → %j', (path, maxLength, expected) => {
    expect(nearestKeyable(path, maxLength)).toBe(expected)
  })

  it('always returns a path that checkPath accepts, the nearest one among the path and its ancestors', () => {
    const piece = fc.constantFrom(
      'a',
      'B',
      '/',
      '//',
      '%2F',
      '%2e',
      '.',
      '..',
      '%09',
      '%zz',
      '\\',
      '?',
      '#',
      'é',
      ' ',
      '%41',
    )
    const path = fc.array(piece, { maxLength: 12 }).map((parts) => `/${parts.join('')}`)
    fc.assert(
      fc.property(
        fc.oneof(path, fc.string({ unit: 'binary' })),
        fc.integer({ min: 1, max: 40 }),
        (p, max) => {
          const key = nearestKeyable(p, max)
          expect(checkPath(key, max)).toBeUndefined()
          if (!p.startsWith('/')) return
          const pathname = p.split('?')[0] as string
          const chain = withAncestors(pathname)
          expect(chain).toContain(key)
          // Nothing nearer in the chain is keyable.
          for (const nearer of chain.slice(0, chain.indexOf(key)))
            expect(checkPath(nearer, max)).toBeDefined()
        },
      ),
      { numRuns: RUNS },
    )
  })
})
