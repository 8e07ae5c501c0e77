#!/usr/bin/env node
// The `coop` command. The project's sources are TypeScript with erasable syntax only,
// which Node >= 22.18 runs directly; npm scripts use the Node 24 from devDependencies.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `coop needs Node >= 22.18 (found ${process.versions.node}). Run it through npm (npm run coop -- ...) ` +
      'which uses the Node 24 installed in node_modules, or install a newer Node.\n',
  )
  process.exit(2)
}
await import('../node/cli/main.ts')
