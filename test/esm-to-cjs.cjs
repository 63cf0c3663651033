// Jest (on Node 20) cannot require() ES modules. light-my-request 6.8 depends on the ESM-only
// `cookie@2`, which Node itself loads fine (require(esm), Node ≥ 20.19); under Jest it is turned
// into CommonJS with esbuild. Only the packages named in jest.config.js go through here.
const { transformSync } = require('esbuild')

module.exports = {
  process(source, filename) {
    const { code, map } = transformSync(source, {
      format: 'cjs',
      sourcefile: filename,
      sourcemap: true,
      target: 'node20',
    })
    return { code, map }
  },
}
