set terminal pngcairo size 900,600 noenhanced
set grid
set key left top
set xlabel 'ranks'
set logscale x 2
set xtics ("1" 1, "2" 2)
set xrange [0.8333333333333334:2.4]
set output "transformer_reverse_time_to_bleu_cpu_throughput.png"
set title "transformer_reverse_time_to_bleu_cpu: strong scaling throughput"
set ylabel 'tokens/sec'
set yrange [0:*]
plot "transformer_reverse_time_to_bleu_cpu.dat" index 0 using 1:2 with linespoints lw 2 pt 7 title "strong scaling", \
     "transformer_reverse_time_to_bleu_cpu.dat" index 0 using 1:3 with lines dt 2 lw 1 lc 1 title "ideal"
set output "transformer_reverse_time_to_bleu_cpu_efficiency.png"
set title "transformer_reverse_time_to_bleu_cpu: strong scaling efficiency"
set ylabel 'efficiency vs ideal (%)'
set yrange [0:110]
set key left bottom
plot "transformer_reverse_time_to_bleu_cpu.dat" index 0 using 1:4 with linespoints lw 2 pt 7 title "strong scaling", 100 with lines dt 2 lc 'black' title 'ideal'
