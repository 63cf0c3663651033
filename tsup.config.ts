import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    fastify: 'src/adapters/fastify.ts',
    express: 'src/adapters/express.ts',
    koa: 'src/adapters/koa.ts',
    client: 'src/client/index.ts',
    'client-patches': 'src/client/patches.ts',
    'client-http': 'src/client/http.ts',
    'client-tabs': 'src/client/tabs.ts',
    react: 'src/react/index.ts',
    tanstack: 'src/tanstack/index.ts',
    redis: 'src/redis/index.ts',
    testing: 'src/testing/index.ts',
    cli: 'src/cli/index.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  splitting: true,
  target: 'es2022',
  platform: 'node',
  external: ['fastify', 'express', 'koa', '@koa/router', 'ioredis', 'react', '@tanstack/query-core'],
})
