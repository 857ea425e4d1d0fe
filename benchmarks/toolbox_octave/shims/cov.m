function C = cov(x, y)
  % MATLAB's cov(x, y) for two vectors: the 2x2 sample covariance matrix (N - 1). Octave 7's cov(x, y)
  % returns the cross-covariance only, which the toolbox's uqi indexes as C(1,2).
  X = [x(:), y(:)];
  X = X - mean(X, 1);
  C = (X' * X) / (size(X, 1) - 1);
end
