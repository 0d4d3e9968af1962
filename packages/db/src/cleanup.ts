/**
 * Runs a cleanup step (ROLLBACK, releasing the migration lock) after `failure`; resolves once the step succeeded. When
 * the connection was lost the step fails too ("Client … is not queryable"): that second error must not replace the
 * first, which names the migration and PostgreSQL's reason, so `failure` is thrown instead with the step's failure
 * added to its message — what db:migrate and npm start print — as "(then <step> failed too: …)". (PostgreSQL itself
 * rolls back and releases the lock of a session it lost.)
 */
export async function cleanUpAfter(failure: unknown, step: string, run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (cleanup) {
    const context = ` (then ${step} failed too: ${cleanup instanceof Error ? cleanup.message : String(cleanup)})`;
    if (!(failure instanceof Error)) throw new Error(`${String(failure)}${context}`, { cause: failure });
    failure.message += context;
    throw failure;
  }
}
