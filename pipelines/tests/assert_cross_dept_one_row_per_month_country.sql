-- fct_cross_dept_monthly joins bookings and cash on month and country; a second row for the
-- same pair means one side was counted twice.
select month, country, count(*) as rows
from {{ ref('fct_cross_dept_monthly') }}
group by month, country
having count(*) > 1
