// Prints one closing line for the whole run, `N passed, N failed` (with `, N skipped` when any),
// which CI reads as the run's result.
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests
    const line = `${results.numPassedTests} passed, ${results.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}`
    process.stdout.write(`\n${line}\n`)
  }
}
module.exports = SummaryReporter
