// An upload's analysis in words: its duration and its loudness.

/** "2 min 5 s": a duration in plain words. */
function describeDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return 'length unknown';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return [h ? `${h} h` : '', h || m ? `${m} min` : '', `${s} s`].filter(Boolean).join(' ');
}

/** "2 min 5 s · -16.1 LUFS, peaks at -1.2 dBTP", or "silent" where loudness cannot be measured. */
export function describeAnalysis(analysis) {
  const parts = [describeDuration(analysis.duration_s)];
  if (Number.isFinite(analysis.integrated_lufs)) {
    let loud = `${analysis.integrated_lufs.toFixed(1)} LUFS`;
    if (Number.isFinite(analysis.true_peak_dbtp)) loud += `, peaks at ${analysis.true_peak_dbtp.toFixed(1)} dBTP`;
    if (Number.isFinite(analysis.loudness_range_lu)) loud += `, range ${analysis.loudness_range_lu.toFixed(1)} LU`;
    parts.push(loud);
  } else {
    parts.push(Number.isFinite(analysis.true_peak_dbtp)
      ? `too quiet to measure, peaks at ${analysis.true_peak_dbtp.toFixed(1)} dBTP` : 'silent');
  }
  return parts.join(' · ');
}
