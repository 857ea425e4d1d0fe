function [gt, f, pan] = fixture(H, W, B)
  % Integer fixture of spec 6.4; 0-based y (rows), x (columns), b (bands).
  [x, y] = meshgrid(0:W-1, 0:H-1);
  gt = zeros(H, W, B); f = zeros(H, W, B);
  for b = 0:B-1
    g = 600 + floor(((x - 20 - 2*b).^2 + (y - 24 + b).^2) / 4) + mod(x .* y * (b + 1), 97) + 40 * b;
    gt(:, :, b + 1) = g;
    f(:, :, b + 1) = floor(19 * g / 20) + 30 + mod(x .* y + 13 * b, 50);
  end
  pan = floor(sum(gt, 3) / B) + mod(3 * x + 5 * y, 40);
end
