// The public surface: what a job module imports from 'kappa-runtime'.
export {};
