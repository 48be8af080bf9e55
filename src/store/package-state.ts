/**
 * What a held package is, in the store's vocabulary: where it came from (its origin, which decides
 * whether it may be served) and which master build it is. Every caller asks these questions here,
 * never by comparing the fields itself.
 */

/**
 * 'master': synced from the master or a sibling; 'adopted': found in storage and verified;
 * 'preheat': fetched before its meeting started, unconfirmed; 'confirmed': a preheat whose
 * meeting's start found it holds the documents of the master's build.
 */
export type PackageSource = 'master' | 'adopted' | 'preheat' | 'confirmed';

const PACKAGE_SOURCES: readonly unknown[] = ['master', 'adopted', 'preheat', 'confirmed'] satisfies PackageSource[];

/** A manifest's recorded origin, or null when it names none this version knows. */
export function asPackageSource(value: unknown): PackageSource | null {
  return PACKAGE_SOURCES.includes(value) ? (value as PackageSource) : null;
}

/** The origin a fetch stores its bytes under. */
export type FetchedSource = Extract<PackageSource, 'master' | 'preheat'>;

/**
 * Fetched before its meeting started and not confirmed since: never served, not reported synced,
 * checked against the master's build at the start, evicted before anything else.
 */
export function awaitsStartCheck(pkg: { readonly source: PackageSource }): boolean {
  return pkg.source === 'preheat';
}

/** Whether its bytes may reach a tablet or a sibling (a preheat only once its start confirmed it). */
export function mayBeServed(pkg: { readonly source: PackageSource }): boolean {
  return !awaitsStartCheck(pkg);
}

/** The build identity of a package or of fresh bytes (zip-lead.ts buildId). */
export interface BuildOf {
  readonly buildId: string;
  /** The master build these bytes stand for when they are of another build with its documents. */
  readonly standsFor?: string | null;
}

/** The master's build a package stands for: its own, or the one it was found equivalent to. */
export function standsForBuild(pkg: BuildOf): string {
  return pkg.standsFor ?? pkg.buildId;
}

/** Whether these bytes are the build `buildId`: their own build, or the one they stand for. */
export function isBuild(pkg: BuildOf, buildId: string): boolean {
  return pkg.buildId === buildId || (pkg.standsFor ?? null) === buildId;
}

/** Whether these bytes are one of `builds` (builds a requester must not get). */
export function isAnyBuild(pkg: BuildOf, builds: readonly string[]): boolean {
  return builds.some((buildId) => isBuild(pkg, buildId));
}

/**
 * Whether these bytes are the build asked for: none of `notBuilds`, and `build` when one is named
 * (null: any build not excluded).
 */
export function isBuildAskedFor(pkg: BuildOf, want: { readonly build: string | null; readonly notBuilds: readonly string[] }): boolean {
  return !isAnyBuild(pkg, want.notBuilds) && (want.build === null || isBuild(pkg, want.build));
}

/** The builds a package is (to name them as builds a sibling must not send). */
export function buildsOf(pkg: BuildOf): string[] {
  return pkg.standsFor ? [pkg.buildId, pkg.standsFor] : [pkg.buildId];
}

/** What to record as standsFor for bytes of `buildId` said to stand for `standsFor`: null when that is their own. */
export function standsForToRecord(buildId: string, standsFor: string | null | undefined): string | null {
  return standsFor && standsFor !== buildId ? standsFor : null;
}
