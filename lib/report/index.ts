export { writeReport, type ReportOptions, type ReportResult } from './report.js';
export { Dashboard, DEFAULT_DASHBOARD_PORT, type DashboardOptions } from './dashboard.js';
export { reportHtml, epochsFromHistory, type ReportData, type ReportMetrics, type ReportSample, type EpochPoint, type ClassIoU } from './page.js';
