/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      { tsconfig: { module: 'commonjs', moduleResolution: 'node', isolatedModules: true } },
    ],
    '/node_modules/cookie/.+\\.js$': '<rootDir>/test/esm-to-cjs.cjs',
  },
  transformIgnorePatterns: ['/node_modules/(?!(.*/node_modules/)?cookie/)'],
  reporters: ['default', '<rootDir>/test/summary-reporter.cjs'],
  testTimeout: 20000,
  // Socket tests bind real ports; two workers suit the 2-core machines this runs on.
  maxWorkers: 2,
}
