// The local services live in infra/local/ (npm start, the bench and the consistency run use them too).
export * from '../../infra/local/ports.ts';
