// The leader's periodic step of the reprocessing pattern (DESIGN "Replay and cutover"): cut over
// each `--cutover auto` version once it has caught up (and, with `--max-changed`, once its diff
// against the served version is within the bound), drop each retired version whose grace is
// over, and refresh the alias cache (which version each job serves, for status), giving a job with
// no alias yet one at its first version (reprocessing.ts `aliasFirstVersion`).
import { jobVersionKey, KappaError, type Clock } from '../protocol/index.js';
import type { LeaderState } from './leader-state.js';
import type { Reprocessing } from './reprocessing.js';
import type { VersionDiffWatch } from './version-diff.js';

/** The alias cache is read from the registry at most this often. */
const ALIAS_REFRESH_MS = 1_000;

export class ReprocessingTick {
  private aliasesReadAtMs = 0;

  constructor(
    private readonly state: LeaderState,
    private readonly reprocessing: Pick<
      Reprocessing,
      'cutover' | 'dropVersionData' | 'forget' | 'aliases' | 'aliasFirstVersion'
    >,
    private readonly clock: Clock,
    /** The diffs of `--max-changed` replays (version-diff.ts): they hold the auto cutover. */
    private readonly diffs?: Pick<VersionDiffWatch, 'refresh' | 'allows'>,
  ) {}

  async advance(): Promise<void> {
    const { state, reprocessing } = this;
    const now = this.clock.now();
    this.diffs?.refresh(state.versions.values(), state.progress, state.aliases);
    for (const version of [...state.versions.values()]) {
      const key = jobVersionKey(version);
      if (version.state === 'running' && version.autoCutover) {
        // Held while its latest diff against the served version exceeds --max-changed (or none is in yet).
        if (this.diffs && !this.diffs.allows(version, state.aliases.get(version.job))) continue;
        try {
          await reprocessing.cutover(version, state.progress.get(key), version.autoCutover.maxLagMessages);
        } catch (error) {
          if (error instanceof KappaError && error.code === 'ADMIN_REJECTED') continue; // not caught up yet
          throw error;
        }
        const { autoCutover: _done, ...cutOver } = version;
        await state.putVersion(cutOver);
        this.aliasesReadAtMs = 0;
      } else if (version.state === 'retired' && version.retireAtMs !== undefined && now >= version.retireAtMs) {
        await reprocessing.dropVersionData(version);
        // Its checkpoints are gone, so its tasks' epochs need not be kept any more.
        await state.deleteVersionAndTasks(key);
        reprocessing.forget(key);
      }
    }
    if (now - this.aliasesReadAtMs >= ALIAS_REFRESH_MS) {
      this.aliasesReadAtMs = now;
      const registry = await reprocessing.aliases();
      const aliases = new Map<string, string>();
      for (const job of new Set([...state.versions.values()].map((version) => version.job))) {
        const entry = (await registry.get(job)) ?? (await reprocessing.aliasFirstVersion(job, state.versions.values()));
        if (entry) aliases.set(job, entry.version);
      }
      state.aliases = aliases;
    }
  }
}
